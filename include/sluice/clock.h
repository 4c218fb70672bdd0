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

// sluice::Clock
//
// A monotonic source of nanoseconds. Implementations must never go backwards on their own
// (`ManualClock` may be set backwards on purpose; the objects tolerate it by refusing more, never
// by admitting more).
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
// A clock that moves only when told to. Starts at `start_nanos`.
// Thread-safe: reads and moves may race; each is a single atomic operation.
class ManualClock final : public Clock {
 public:
  explicit ManualClock(int64_t start_nanos = 0) noexcept : now_(start_nanos) {}

  int64_t NowNanos() const noexcept override { return now_.load(std::memory_order_acquire); }

  // Moves the clock forward by `d` (or backwards, if `d` is negative).
  void Advance(absl::Duration d) noexcept {
    now_.fetch_add(absl::ToInt64Nanoseconds(d), std::memory_order_acq_rel);
  }
  void AdvanceNanos(int64_t nanos) noexcept {
    now_.fetch_add(nanos, std::memory_order_acq_rel);
  }
  void SetNanos(int64_t nanos) noexcept { now_.store(nanos, std::memory_order_release); }

 private:
  std::atomic<int64_t> now_;
};

}  // namespace v1
}  // namespace sluice

#endif  // SLUICE_CLOCK_H_
