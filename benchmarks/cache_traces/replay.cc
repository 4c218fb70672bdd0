#include "replay.h"

#include <list>
#include <memory>
#include <string_view>
#include <utility>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "sluice/clock.h"
#include "sluice/response_cache.h"

namespace cache_traces {
namespace {

// A plain byte-bounded LRU: the baseline every policy should beat or match.
class Lru {
 public:
  explicit Lru(int64_t capacity) : capacity_(capacity) {}
  bool Get(int64_t id) {
    auto it = index_.find(id);
    if (it == index_.end()) return false;
    order_.splice(order_.begin(), order_, it->second);
    return true;
  }
  void Put(int64_t id, int64_t charge) {
    if (charge > capacity_) return;
    while (used_ + charge > capacity_) {
      used_ -= order_.back().second;
      index_.erase(order_.back().first);
      order_.pop_back();
    }
    order_.emplace_front(id, charge);
    index_[id] = order_.begin();
    used_ += charge;
  }
  int64_t used() const { return used_; }

 private:
  int64_t capacity_, used_ = 0;
  std::list<std::pair<int64_t, int64_t>> order_;
  absl::flat_hash_map<int64_t, std::list<std::pair<int64_t, int64_t>>::iterator> index_;
};

// Every answer views one shared buffer: the cache charges the view's length, and the replay
// allocates nothing per answer.
const std::shared_ptr<const std::string>& AnswerBuffer() {
  static const auto buffer = std::make_shared<const std::string>(1 << 20, 'x');
  return buffer;
}

}  // namespace

const std::vector<std::string>& Columns() {
  static const std::vector<std::string> columns = {"lru", "sluice", "sluice-1shard", "sluice-slru"};
  return columns;
}

absl::StatusOr<std::vector<Result>> Replay(const std::vector<Request>& trace,
                                           const std::vector<int64_t>& budgets) {
  // A clock that never moves: entries never expire (the peers have no TTL either).
  sluice::ManualClock clock;
  struct PerBudget {
    Lru lru;
    std::unique_ptr<sluice::ResponseCache> caches[3];
    int64_t hits[4] = {0, 0, 0, 0};
  };
  std::vector<PerBudget> runs;
  runs.reserve(budgets.size());
  for (int64_t budget : budgets) {
    PerBudget run{Lru(budget), {}, {}};
    const sluice::ResponseCache::Options options[3] = {
        {.max_bytes = budget},
        {.max_bytes = budget, .shards = 1},
        {.max_bytes = budget, .admission = false},
    };
    for (int i = 0; i < 3; ++i) {
      auto cache = sluice::ResponseCache::Create(options[i], &clock);
      if (!cache.ok()) return cache.status();
      run.caches[i] = *std::move(cache);
    }
    runs.push_back(std::move(run));
  }
  const auto& buffer = AnswerBuffer();
  for (const Request& r : trace) {
    const sluice::CacheKey key = QuestionKey(r.id);
    const int64_t answer =
        r.charge - static_cast<int64_t>(key.canonical.size()) - sluice::ResponseCache::kEntryOverhead;
    if (answer < 0 || answer > static_cast<int64_t>(buffer->size())) {
      return absl::InvalidArgumentError(absl::StrCat(
          "trace: question ", r.id, " charged ", r.charge, " bytes, which its key (",
          key.canonical.size(), " bytes) and the entry overhead cannot make up"));
    }
    for (PerBudget& run : runs) {
      if (run.lru.Get(r.id)) {
        ++run.hits[0];
      } else {
        run.lru.Put(r.id, r.charge);
      }
      for (int i = 0; i < 3; ++i) {
        if (run.caches[i]->Get(key) != nullptr) {
          ++run.hits[i + 1];
        } else {
          run.caches[i]->Put(key, {.body = sluice::Bytes(buffer, std::string_view(*buffer).substr(
                                                             0, static_cast<size_t>(answer)))});
        }
      }
    }
  }
  std::vector<Result> results;
  const auto requests = static_cast<int64_t>(trace.size());
  for (size_t b = 0; b < budgets.size(); ++b) {
    PerBudget& run = runs[b];
    results.push_back({Columns()[0], budgets[b], run.hits[0], requests, run.lru.used()});
    for (int i = 0; i < 3; ++i) {
      results.push_back({Columns()[static_cast<size_t>(i) + 1], budgets[b], run.hits[i + 1],
                         requests, run.caches[i]->stats().bytes});
    }
  }
  return results;
}

}  // namespace cache_traces
