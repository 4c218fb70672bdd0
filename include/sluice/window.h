// -----------------------------------------------------------------------------
// File: sluice/window.h
// -----------------------------------------------------------------------------
//
// `Window` describes one rate: `limit` units per `period`, of which up to `burst` may be taken
// at once by an idle key. RateLimiter, LeakyBucket and TokenBudget take one or several.
//
// A window has one of two semantics (`kind`): GCRA (the default, described first) or an exact
// sliding window (WindowKind::kSliding, described after it).
//
// GCRA. The semantics are those of GCRA (the generic cell rate algorithm), which equals a token
// bucket of capacity `burst` refilled continuously at `limit / period`: over *any* interval of
// length t, a key is admitted at most `burst + floor(t * limit / period)` units, and a request is
// refused only if admitting it would break that bound for some interval ending now.
//
// Exactness: the arithmetic is integer and exact when `limit / gcd(limit, period in ns)` is at
// most 16, which covers every limit whose prime factors are 2, 3 and 5 (100/min, 5000/day,
// 1e6/s, 3/s, ...) and any limit up to 16. Otherwise the emission interval is rounded *up* by less
// than 1/16 ns, so the limiter may refuse a request up to a few nanoseconds early per unit; it
// never admits more than the bound. `exact()` on the compiled window reports which case applies.
//
// GCRA allows bursts: with burst = limit = 5 per 10 minutes, a key may be admitted 5 times at
// once and a 6th time 2 minutes later, so some 10-minute interval holds 6 (up to 2 * limit - 1).
//
// Sliding (WindowKind::kSliding): a sliding log. A key is never admitted more than `limit` units
// in ANY interval of length `period` (half-open: an admission at t leaves the window at
// t + period), and a request is refused only if admitting it would break that bound: exact, with
// no rounding, in every scope (process, host, cluster strict). "5 login attempts per 10 minutes"
// then means exactly that. The price is state: a key keeps the times of its last `limit`
// admissions (8 bytes each), so `limit` is at most kMaxSlidingLimit, and only RateLimiter takes
// sliding windows (a TokenBudget's windows count tokens, far too many for per-admission state;
// a LeakyBucket is a schedule, not a window). Rules:
//   * `burst` must be 0 (or equal to `limit`): a sliding window has no separate burst; `limit`
//     and `period` are checked as for GCRA too (at most one per nanosecond of the period);
//   * a cost c > 1 counts as c admissions at the same instant, so c <= limit;
//   * every window of one RateLimiter has the same kind (a mix is InvalidArgument naming
//     windows[i].kind); several sliding windows (5 per minute and 20 per hour) are fine;
//   * a key's times never go backwards: a request that reads an earlier time than the key's
//     latest admission (threads or processes whose clock readings race by nanoseconds) is
//     decided, and recorded, at that latest time, which can only refuse earlier;
//   * in cluster scope periods are whole microseconds (Redis's clock) and leased mode is refused.
// State per key and window: 8 * (1 + limit) bytes in process scope; in a host region see
// SharedRegionBytesForSlidingWindows (sluice/rate_limiter.h: size max_keys for it); in Redis a
// sorted set of the admissions inside the window. A decision reads one time per window and
// writes `cost` (sliding_log.h in the sources has the argument that this is exact).
//
// Example:
//
//   std::vector<sluice::Window> windows = {sluice::Window::PerSecond(10, /*burst=*/20),
//                                          sluice::Window::PerDay(5000)};
//   // Exactly 5 per any 10 minutes:
//   std::vector<sluice::Window> logins = {sluice::Window::Sliding(5, absl::Minutes(10))};

#ifndef SLUICE_WINDOW_H_
#define SLUICE_WINDOW_H_

#include <cstdint>

#include "absl/time/time.h"

namespace sluice {
inline namespace v1 {

// sluice::WindowKind: how a Window counts (see the file comment).
enum class WindowKind : int {
  kGcra = 0,     // GCRA: a token bucket of `burst`, refilled at limit / period (the default)
  kSliding = 1,  // at most `limit` in any interval of length `period`, exactly (a sliding log)
};

// The largest `limit` of a sliding window: a key keeps `limit` timestamps per window.
inline constexpr int64_t kMaxSlidingLimit = 1000;

// sluice::Window
struct Window {
  // Units (requests or tokens) per `period`. Must be > 0.
  int64_t limit = 0;
  // Must be > 0 and at most 366 days.
  absl::Duration period = absl::ZeroDuration();
  // The most an idle key may take at once. 0 means `limit` (a whole period's worth).
  // Must be >= 0; with kSliding, 0 or `limit`.
  int64_t burst = 0;
  // How the window counts. Default kGcra. kSliding: 1 <= limit <= kMaxSlidingLimit.
  WindowKind kind = WindowKind::kGcra;

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
  // An exact sliding window: at most `limit` in any interval of length `period`.
  static Window Sliding(int64_t limit, absl::Duration period) {
    return {limit, period, 0, WindowKind::kSliding};
  }
  static Window SlidingPerMinute(int64_t limit) { return Sliding(limit, absl::Minutes(1)); }
  static Window SlidingPerHour(int64_t limit) { return Sliding(limit, absl::Hours(1)); }
};

}  // namespace v1
}  // namespace sluice

#endif  // SLUICE_WINDOW_H_
