// The balancer's own estimate of the prompt tokens each endpoint keeps in its KV cache: every
// conversation recently routed there, counted once at its latest size and fading with a
// half-life since it was last routed. It is what prefix affinity checks before stacking one more
// long session onto a replica, when the engine's own KV metrics are missing or stale.
//
// A prompt counts only once its conversation continues (its next turn arrives): until then it is
// a one-off as far as anyone knows (a RAG question, a 2-8k-token document to summarise), whose
// cache the engine may evict at no cost to anyone, and counting it for a half-life made replicas
// that had served many one-offs look full (benchmarks/fleet2, heterogeneous workload).
#ifndef SLUICE_LIB_RESIDENT_TOKENS_H_
#define SLUICE_LIB_RESIDENT_TOKENS_H_

#include <array>
#include <cstdint>
#include <deque>
#include <utility>

#include "absl/container/flat_hash_map.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
#include "balancing/prefix_index.h"

namespace sluice {
inline namespace v1 {
namespace internal {

// Not thread-safe: the Balancer's mutex guards it. Slots are the prefix index's.
class ResidentTokens {
 public:
  // A conversation as last routed.
  struct Session {
    int slot = -1;
    double tokens = 0;
    int64_t at = 0;  // nanoseconds on the balancer's clock
    bool counted = false;  // a continued conversation: its tokens are in its slot's sum
  };

  // `group_blocks`: the prefix index's (>= 1), whose matches end at group ends.
  ResidentTokens(absl::Duration half_life, int64_t group_blocks)
      : half_life_nanos_(static_cast<double>(absl::ToInt64Nanoseconds(half_life))),
        group_blocks_(group_blocks) {}

  // The conversation a request continues, found by the key its previous turn left: that turn's
  // last full block. A request whose longest match anywhere (not at a branch) is `matched`
  // leading blocks finds it one block before the match's end, or within the group after it (the
  // index matches whole groups, and the previous turn's last group was partial). Writes its key
  // to *key; nullptr (and *key = 0) when none.
  const Session* Find(absl::Span<const uint64_t> blocks, int64_t matched, uint64_t* key) const;

  // Tokens resident at `slot` now, and what one session adds to that (0 for a first turn).
  double Resident(int slot, int64_t now) const;
  double Contribution(const Session& session, int64_t now) const;

  // Records that a request of `tokens` tokens went to `slot`: it replaces the session under
  // `previous_key` (0: a new conversation, kept but not counted until its next turn), wherever
  // that one was.
  void Record(absl::Span<const uint64_t> blocks, uint64_t previous_key, int slot, double tokens,
              int64_t now);

  // Forgets every session at `slot` (its endpoint was removed).
  void Drop(int slot);

 private:
  static constexpr size_t kMaxSessions = 1 << 16;
  struct Sum {  // Σ tokens x 2^-((at - routed) / half-life) at `at`
    double tokens = 0;
    int64_t at = 0;
  };

  double Decay(int64_t from, int64_t to) const;
  void Subtract(const Session& session, int64_t now);
  static uint64_t KeyOf(absl::Span<const uint64_t> blocks) {
    return blocks.size() >= 2 ? blocks[blocks.size() - 2] : blocks[0];
  }

  const double half_life_nanos_;
  const int64_t group_blocks_;
  std::array<Sum, PrefixIndex::kMaxSlots> sums_{};
  absl::flat_hash_map<uint64_t, Session> sessions_;
  std::deque<std::pair<uint64_t, int64_t>> order_;  // (key, at), oldest first; stale if re-routed
};

}  // namespace internal
}  // namespace v1
}  // namespace sluice

#endif  // SLUICE_LIB_RESIDENT_TOKENS_H_
