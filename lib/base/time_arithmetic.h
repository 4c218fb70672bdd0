// Time arithmetic that saturates instead of wrapping.
//
// A duration near "forever" (absl::InfiniteDuration(), a Retry-After or TTL of 2^62 ns from a
// careless caller) must end at the end of time, never wrap into the past: a wrapped deadline has
// already passed, a wrapped cooldown has already ended, a wrapped TTL is expired on arrival.
#ifndef SLUICE_LIB_TIME_ARITHMETIC_H_
#define SLUICE_LIB_TIME_ARITHMETIC_H_

#include <cstdint>
#include <limits>

#include "absl/time/time.h"

namespace sluice {
inline namespace v1 {
namespace internal {

// a + b, clamped to the int64 range.
inline int64_t SaturatingAdd(int64_t a, int64_t b) {
  int64_t sum;
  if (!__builtin_add_overflow(a, b, &sum)) return sum;
  return b > 0 ? std::numeric_limits<int64_t>::max() : std::numeric_limits<int64_t>::min();
}

// The instant `d` after `now_nanos` (absl::ToInt64Nanoseconds already saturates the duration).
inline int64_t AddDuration(int64_t now_nanos, absl::Duration d) {
  return SaturatingAdd(now_nanos, absl::ToInt64Nanoseconds(d));
}

}  // namespace internal
}  // namespace v1
}  // namespace sluice

#endif  // SLUICE_LIB_TIME_ARITHMETIC_H_
