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
//   * `Clock::Tsc()`           the CPU timestamp counter, calibrated on CLOCK_MONOTONIC: as
//                              cheap as the coarse clock, as fine as the steady one (see below).
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
struct TscClockStatus;

class Clock {
 public:
  virtual ~Clock() = default;

  // Nanoseconds since this clock's origin. Thread-safe.
  virtual int64_t NowNanos() const noexcept = 0;

  // The process-wide steady clock. Never destroyed. Thread-safe.
  static const Clock* Steady() noexcept;

  // The process-wide coarse steady clock (see the file comment for the trade-off).
  static const Clock* CoarseSteady() noexcept;

  // The process-wide timestamp-counter clock. Never destroyed. Thread-safe.
  //
  // Timeline: CLOCK_MONOTONIC's (the steady clock's, on Linux), so it may read a host-scope
  // region whose epoch another process took from the steady clock.
  // Cost: one `rdtsc`, a few loads of one read-mostly cache line, a 64x64->128-bit multiply and
  // a shift (no division), and a compare against this thread's last reading: about 10 ns on the
  // development VM, where `rdtsc` alone costs 9.3 ns and clock_gettime 22 ns (BENCHMARKS.md,
  // "A cheaper clock").
  // Precision: one counter tick (< 1 ns); the first call calibrates for about 4 ms (two real
  // sleeps of 2 ms), so take the clock at start-up, not on a hot path.
  // Accuracy and drift: it is re-anchored on CLOCK_MONOTONIC by the first reader after every
  // second (one clock_gettime), slewing (at most 0.1%) rather than stepping, so it follows NTP
  // adjustments of CLOCK_MONOTONIC and stays within a few microseconds of it (measured, as
  // `TscStatus().last_offset_nanos`: about 2 us at the first re-anchoring, the short
  // calibration's rate error, then a few ns; clock_test.cc asserts 1 ms). An offset above 1 ms
  // (a suspended VM) is stepped away.
  // Monotonic: never backwards for a thread (each read is clamped to the thread's last one);
  // threads may see each other's readings out of order by at most the counter skew between cores.
  // Across processes: each process calibrates on its own, so two processes disagree by at most
  // the sum of their offsets (microseconds). A host-scope object shared by processes on
  // different clocks (this one in one, the steady clock in another) therefore sees time
  // differ by that much; where microseconds matter, let every process use the same clock.
  // fork(): the child keeps the calibration (same machine, same counter).
  // Fallback: CLOCK_MONOTONIC itself (the steady clock's cost), when the CPU is not x86-64, has
  // no invariant TSC (CPUID 0x80000007 EDX bit 8; some hypervisors hide it), or calibration
  // finds the counter unreliable (going backwards, a rate outside 0.1-20 GHz, or two rate
  // measurements 2 ms apart that disagree by more than 0.1%). `TscStatus()` says which.
  static const Clock* Tsc() noexcept;

  // How `Tsc()` reads time (calibrates it if it has not been taken yet).
  static TscClockStatus TscStatus() noexcept;
};

// What `Clock::TscStatus()` reports.
struct TscClockStatus {
  bool uses_tsc = false;      // false: the clock reads CLOCK_MONOTONIC
  const char* reason = "";    // why not (a static string), "" when it uses the counter
  double ticks_per_second = 0;  // the calibrated counter rate (0 in the fallback)
  int64_t last_offset_nanos = 0;  // CLOCK_MONOTONIC minus this clock at the last re-anchoring
  int64_t max_half_bracket_nanos = 0;  // the widest half-bracket of a (counter, monotonic) pair
  int64_t anchors = 0;        // re-anchorings so far
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
