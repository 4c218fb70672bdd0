// Chooses the admission window's share of a ResponseCache from what miniature caches earn.
//
// Hill climbing on the live hit rate (Caffeine's adaptive W-TinyLFU) moves the window one step
// per sample and wanders: at the rate that follows a shifting working set it gives up frequency
// gains on Zipf traffic (1.5-4 points), and at the rate that keeps them it trails LRU by 3-13
// points on recency-heavy traffic (measured during development on traces of the shapes of
// benchmarks/cache_traces, 16 shards, 8 and 32 MiB). Instead, the tuner
// replays a spatial sample of the keys (those whose hash falls in 1/R of the hash space, the
// SHARDS sampling of Waldspurger et al., "Efficient MRC Construction with SHARDS", FAST 2015)
// through miniature W-TinyLFU caches of 1/R of the budget, one per candidate window share
// (Waldspurger et al., "Cache Modeling and Optimization using Miniature Simulations", ATC 2017),
// and the shards take the share whose miniature earned the most hits lately.
//
// Cost: a sampled request (1 in R; R keeps a miniature near kMiniatureBytes, so a cache of
// 1 MiB or less samples every request) takes the tuner's mutex and is replayed through
// kShares.size() miniatures holding digests only; the miniatures hold at most
// kShares.size() x (budget / R / 64) entries' bookkeeping (about 100 bytes each).
//
// Thread-safe.
#ifndef SLUICE_LIB_CACHE_WINDOW_TUNER_H_
#define SLUICE_LIB_CACHE_WINDOW_TUNER_H_

#include <array>
#include <atomic>
#include <cstdint>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "cache/w_tiny_lfu.h"
#include "sluice/internal/mutex.h"

namespace sluice {
inline namespace v1 {
namespace internal {

class WindowTuner {
 public:
  // The candidate window shares: W-TinyLFU's 1% (frequency) up to a whole-cache window (LRU).
  static constexpr std::array<double, 5> kShares = {0.01, 0.05, 0.2, 0.5, 1.0};
  // The budget a miniature aims at: about 400 answers of the 2.4 KiB average.
  static constexpr int64_t kMiniatureBytes = int64_t{1} << 20;

  WindowTuner(int64_t capacity_bytes, double protected_share);

  // Whether the key falls in the sample. Uses bits the shard choice and the sketch do not.
  bool Sampled(const Digest& digest) const {
    return ((digest.first >> 32) & sample_mask_) == 0;
  }
  // A sampled lookup at `now` (ns): counts a hit or a miss in every miniature.
  void Lookup(const Digest& digest, int64_t now);
  // A sampled insert of `bytes`: every miniature that does not hold the key stores it.
  void Insert(const Digest& digest, int64_t bytes);
  // The share the shards' windows should have now (starts at kShares[0]).
  double share() const { return kShares[best_.load(std::memory_order_relaxed)]; }

  // fork(): the child inherits the lock released.
  void LockForFork() ABSL_NO_THREAD_SAFETY_ANALYSIS { mu_.lock(); }
  void UnlockAfterFork() ABSL_NO_THREAD_SAFETY_ANALYSIS { mu_.unlock(); }

 private:
  struct Nothing {};
  // Ends a period: each miniature's score decays by half and gains its hits; the best leads.
  void EndPeriod() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const uint64_t sample_mask_;  // R - 1, R a power of two
  const int64_t miniature_bytes_;
  Mutex mu_;
  std::vector<WTinyLfu<Nothing>> miniatures_ ABSL_GUARDED_BY(mu_);
  std::array<int64_t, kShares.size()> period_hits_ ABSL_GUARDED_BY(mu_) = {};
  std::array<double, kShares.size()> scores_ ABSL_GUARDED_BY(mu_) = {};
  int64_t period_lookups_ ABSL_GUARDED_BY(mu_) = 0;
  std::atomic<size_t> best_{0};
};

}  // namespace internal
}  // namespace v1
}  // namespace sluice

#endif  // SLUICE_LIB_CACHE_WINDOW_TUNER_H_
