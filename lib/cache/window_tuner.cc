#include "cache/window_tuner.h"

#include <algorithm>
#include <bit>

namespace sluice {
inline namespace v1 {
namespace internal {

namespace {
// 1 in R keys is sampled: the largest power of two that leaves a miniature kMiniatureBytes.
uint64_t SampleRate(int64_t capacity_bytes) {
  const auto ratio = static_cast<uint64_t>(
      std::max<int64_t>(1, capacity_bytes / WindowTuner::kMiniatureBytes));
  return std::min<uint64_t>(std::bit_floor(ratio), uint64_t{1} << 20);
}

// A period is as many sampled lookups as a miniature holds entries (at the 2.4 KiB average
// answer), and at least 128: long enough for a miniature's hit count to mean something, short
// enough to follow a working set that moves on within a few times the cache's size. Twice as
// long lost 3.4 points to LRU on a working set that moved every 25,000 requests in a 128 MiB
// cache; half as long lost 1 point on Zipf and 3 on a loop (scripts/bench-cache-peers.sh).
int64_t PeriodLookups(int64_t miniature_bytes) {
  return std::max<int64_t>(128, miniature_bytes / 2400);
}
}  // namespace

WindowTuner::WindowTuner(int64_t capacity_bytes, double protected_share)
    : sample_mask_(SampleRate(capacity_bytes) - 1),
      miniature_bytes_(capacity_bytes / static_cast<int64_t>(SampleRate(capacity_bytes))) {
  miniatures_.reserve(kShares.size());
  for (double share : kShares) {
    miniatures_.emplace_back(miniature_bytes_, protected_share, /*admission=*/true, share);
  }
}

void WindowTuner::Lookup(const Digest& digest, int64_t now) {
  MutexLock lock(&mu_);
  for (size_t i = 0; i < miniatures_.size(); ++i) {
    WTinyLfu<Nothing>& mini = miniatures_[i];
    mini.Count(digest);
    if (auto it = mini.Find(digest); it != mini.end()) {
      mini.Touch(it, now);
      ++period_hits_[i];
    }
  }
  if (++period_lookups_ >= PeriodLookups(miniature_bytes_)) EndPeriod();
}

void WindowTuner::Insert(const Digest& digest, int64_t bytes) {
  // An answer larger than a miniature: the shard may still hold it, the miniatures cannot.
  if (bytes > miniature_bytes_) return;
  MutexLock lock(&mu_);
  for (WTinyLfu<Nothing>& mini : miniatures_) {
    if (mini.Find(digest) == mini.end()) mini.Insert(digest, bytes, Nothing{});
  }
}

void WindowTuner::EndPeriod() {
  size_t best = best_.load(std::memory_order_relaxed);
  for (size_t i = 0; i < scores_.size(); ++i) {
    scores_[i] = scores_[i] / 2 + static_cast<double>(period_hits_[i]);
    period_hits_[i] = 0;
  }
  // The leader changes only when another miniature earned strictly more.
  for (size_t i = 0; i < scores_.size(); ++i) {
    if (scores_[i] > scores_[best]) best = i;
  }
  best_.store(best, std::memory_order_relaxed);
  period_lookups_ = 0;
}

}  // namespace internal
}  // namespace v1
}  // namespace sluice
