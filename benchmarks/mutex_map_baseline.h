// The baseline a keyed limiter is usually written as: one token bucket per key (float tokens and a
// last-refill time, as golang.org/x/time/rate and Guava keep them), in a hash map behind one
// mutex. Written here for the side-by-side benchmark only; not used by sluice.
#ifndef SLUICE_BENCHMARKS_MUTEX_MAP_BASELINE_H_
#define SLUICE_BENCHMARKS_MUTEX_MAP_BASELINE_H_

#include <algorithm>
#include <string>
#include <string_view>

#include "absl/container/flat_hash_map.h"
#include "absl/synchronization/mutex.h"

class MutexMapTokenBucket {
 public:
  MutexMapTokenBucket(double rate_per_second, double burst)
      : rate_per_nano_(rate_per_second / 1e9), burst_(burst) {}

  bool Allow(std::string_view key, int64_t now_nanos) {
    absl::MutexLock lock(&mu_);
    auto [it, inserted] = buckets_.try_emplace(std::string(key), Bucket{burst_, now_nanos});
    Bucket& b = it->second;
    b.tokens = std::min(burst_, b.tokens + (now_nanos - b.last) * rate_per_nano_);
    b.last = now_nanos;
    if (b.tokens < 1) return false;
    b.tokens -= 1;
    return true;
  }

 private:
  struct Bucket {
    double tokens;
    int64_t last;
  };
  const double rate_per_nano_;
  const double burst_;
  absl::Mutex mu_;
  absl::flat_hash_map<std::string, Bucket> buckets_ ABSL_GUARDED_BY(mu_);
};

#endif  // SLUICE_BENCHMARKS_MUTEX_MAP_BASELINE_H_
