// -----------------------------------------------------------------------------
// File: sluice/window.h
// -----------------------------------------------------------------------------
//
// `Window` describes one rate: `limit` units per `period`, of which up to `burst` may be taken
// at once by an idle key. RateLimiter, LeakyBucket and TokenBudget take one or several.
//
// The semantics are those of GCRA (the generic cell rate algorithm), which equals a token bucket
// of capacity `burst` refilled continuously at `limit / period`: over *any* interval of length
// t, a key is admitted at most `burst + floor(t * limit / period)` units, and a request is refused
// only if admitting it would break that bound for some interval ending now.
//
// Exactness: the arithmetic is integer and exact when `limit / gcd(limit, period in ns)` is at
// most 16, which covers every limit whose prime factors are 2, 3 and 5 (100/min, 5000/day,
// 1e6/s, 3/s, ...) and any limit up to 16. Otherwise the emission interval is rounded *up* by less
// than 1/16 ns, so the limiter may refuse a request up to a few nanoseconds early per unit; it
// never admits more than the bound. `exact()` on the compiled window reports which case applies.
//
// Example:
//
//   std::vector<sluice::Window> windows = {sluice::Window::PerSecond(10, /*burst=*/20),
//                                          sluice::Window::PerDay(5000)};

#ifndef SLUICE_WINDOW_H_
#define SLUICE_WINDOW_H_

#include <cstdint>

#include "absl/time/time.h"

namespace sluice {
inline namespace v1 {

// sluice::Window
struct Window {
  // Units (requests or tokens) per `period`. Must be > 0.
  int64_t limit = 0;
  // Must be > 0 and at most 366 days.
  absl::Duration period = absl::ZeroDuration();
  // The most an idle key may take at once. 0 means `limit` (a whole period's worth).
  // Must be >= 0.
  int64_t burst = 0;

  int64_t effective_burst() const { return burst > 0 ? burst : limit; }

  static Window PerSecond(int64_t limit, int64_t burst = 0) {
    return {limit, absl::Seconds(1), burst};
  }
  static Window PerMinute(int64_t limit, int64_t burst = 0) {
    return {limit, absl::Minutes(1), burst};
  }
  static Window PerHour(int64_t limit, int64_t burst = 0) {
    return {limit, absl::Hours(1), burst};
  }
  static Window PerDay(int64_t limit, int64_t burst = 0) {
    return {limit, absl::Hours(24), burst};
  }
};

}  // namespace v1
}  // namespace sluice

#endif  // SLUICE_WINDOW_H_
