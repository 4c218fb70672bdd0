// RecencyStack: the LRU stack of the questions asked so far, for the recency-driven trace shapes.
#ifndef SLUICE_BENCHMARKS_CACHE_TRACES_RECENCY_STACK_H_
#define SLUICE_BENCHMARKS_CACHE_TRACES_RECENCY_STACK_H_

#include <bit>
#include <cstdint>
#include <vector>

#include "absl/container/flat_hash_map.h"

namespace cache_traces {

// The LRU stack of the questions asked so far (the "LRU stack model" of Mattson et al., 1970):
// AtRank(1) is the most recently asked distinct question. Each question is a mark at the time it
// was last asked, in a Fenwick tree over request times, so rank lookups and moves take O(log n).
class RecencyStack {
 public:
  // Room for `requests` calls of Ask.
  explicit RecencyStack(int64_t requests)
      : tree_(static_cast<size_t>(requests) + 1), asked_at_(static_cast<size_t>(requests)) {}

  void Ask(int64_t id) {
    auto [it, inserted] = last_asked_.try_emplace(id, now_);
    if (!inserted) {
      Add(it->second, -1);
      it->second = now_;
    }
    Add(now_, +1);
    asked_at_[static_cast<size_t>(now_)] = id;
    ++now_;
  }
  int64_t distinct() const { return static_cast<int64_t>(last_asked_.size()); }
  // 1 <= rank <= distinct().
  int64_t AtRank(int64_t rank) const {
    // The (distinct - rank + 1)-th mark from the oldest: descend the tree by powers of two.
    int64_t want = distinct() - rank + 1, pos = 0;
    const auto size = static_cast<int64_t>(tree_.size());
    for (int64_t step = static_cast<int64_t>(std::bit_floor(tree_.size() - 1)); step > 0;
         step >>= 1) {
      if (pos + step < size &&
          tree_[static_cast<size_t>(pos + step)] < want) {
        pos += step;
        want -= tree_[static_cast<size_t>(pos)];
      }
    }
    return asked_at_[static_cast<size_t>(pos)];  // tree index pos + 1 is time pos
  }

 private:
  void Add(int64_t time, int64_t delta) {
    for (auto i = static_cast<size_t>(time) + 1; i < tree_.size(); i += i & (~i + 1)) {
      tree_[i] += delta;
    }
  }

  std::vector<int64_t> tree_;
  std::vector<int64_t> asked_at_;
  absl::flat_hash_map<int64_t, int64_t> last_asked_;
  int64_t now_ = 0;
};

}  // namespace cache_traces

#endif  // SLUICE_BENCHMARKS_CACHE_TRACES_RECENCY_STACK_H_
