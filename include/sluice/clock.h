// -----------------------------------------------------------------------------
// File: sluice/clock.h
// -----------------------------------------------------------------------------
//
// Every sluice object reads time through a `Clock`, so that tests drive time by hand and never
// sleep to wait for a window. Time is an `int64_t` count of nanoseconds since an arbitrary but
// fixed origin; only differences matter.
//
//   * `Clock::Steady()`        std::chrono::steady_clock (the default everywhere).
//   * `Clock::CoarseSteady()`  CLOCK_MONOTONIC_COARSE: about 3x cheaper to read, but it only
//                              moves once per kernel tick (1-4 ms). Decisions stay exact with
//                              respect to the clock they read; bursts are quantised to a tick.
//   * `ManualClock`            moves only when told to (tests, simulations, replays).
//
// Example:
//
//   sluice::ManualClock clock;
//   auto limiter = sluice::RateLimiter::Create(options, &clock);
//   ...
//   clock.Advance(absl::Seconds(1));   // the next window opens; no sleep
//
// Thread-safety: every `Clock` is safe for concurrent use from any number of threads.
// A clock must outlive every object that was constructed with it.

#ifndef SLUICE_CLOCK_H_
#define SLUICE_CLOCK_H_

#include <atomic>
#include <cstdint>

#include "absl/time/time.h"

namespace sluice {
inline namespace v1 {

// Every clock reads in [0, kMaxClockNanos] (2^62 ns: 146 years). The objects rely on it: a
// reading plus any duration saturates instead of wrapping, and 0 is never in the future.
inline constexpr int64_t kMaxClockNanos = int64_t{1} << 62;

// sluice::Clock
//
// A monotonic source of nanoseconds. Implementations must never go backwards on their own
// (`ManualClock` may be set backwards on purpose; the objects tolerate it by refusing more, never
// by admitting more), and must read in [0, kMaxClockNanos].
class Clock {
 public:
  virtual ~Clock() = default;

  // Nanoseconds since this clock's origin. Thread-safe.
  virtual int64_t NowNanos() const noexcept = 0;

  // The process-wide steady clock. Never destroyed. Thread-safe.
  static const Clock* Steady() noexcept;

  // The process-wide coarse steady clock (see the file comment for the trade-off).
  static const Clock* CoarseSteady() noexcept;
};

// sluice::ManualClock
//
// A clock that moves only when told to. Starts at `start_nanos`. Like every clock it reads in
// [0, kMaxClockNanos]: a start or a move beyond that range stops at its end (it never wraps).
// Thread-safe: reads and moves may race; each is a single atomic operation.
class ManualClock final : public Clock {
 public:
  explicit ManualClock(int64_t start_nanos = 0) noexcept : now_(Clamp(start_nanos)) {}

  int64_t NowNanos() const noexcept override { return now_.load(std::memory_order_acquire); }

  // Moves the clock forward by `d` (or backwards, if `d` is negative), stopping at the range's
  // ends.
  void Advance(absl::Duration d) noexcept { AdvanceNanos(absl::ToInt64Nanoseconds(d)); }
  void AdvanceNanos(int64_t nanos) noexcept {
    int64_t now = now_.load(std::memory_order_relaxed);
    int64_t next;
    do {
      if (__builtin_add_overflow(now, nanos, &next)) next = nanos > 0 ? kMaxClockNanos : 0;
    } while (!now_.compare_exchange_weak(now, Clamp(next), std::memory_order_acq_rel,
                                         std::memory_order_relaxed));
  }
  // Sets the clock to `nanos`, clamped to [0, kMaxClockNanos].
  void SetNanos(int64_t nanos) noexcept { now_.store(Clamp(nanos), std::memory_order_release); }

 private:
  static constexpr int64_t Clamp(int64_t nanos) noexcept {
    return nanos < 0 ? 0 : (nanos > kMaxClockNanos ? kMaxClockNanos : nanos);
  }
  std::atomic<int64_t> now_;
};

}  // namespace v1
}  // namespace sluice

#endif  // SLUICE_CLOCK_H_
