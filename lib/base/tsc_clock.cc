// The timestamp-counter clock (sluice/clock.h documents the contract; tsc_clock.h the internals).
//
// Learned from, not copied: the Linux vDSO's clocksource (mult/shift fixed-point conversion of
// counter deltas), quanta (Rust; calibrates the counter against the OS monotonic clock) and
// NTP's slewing (correct an offset by running slightly fast or slow, never by stepping back).
#include "base/tsc_clock.h"

#include <sched.h>
#include <time.h>

#include <algorithm>
#include <cmath>

#if defined(__x86_64__)
#include <cpuid.h>
#include <x86intrin.h>
#endif

namespace sluice {
inline namespace v1 {
namespace internal {
namespace {

__extension__ typedef __int128 Int128;  // GCC/Clang: a 64x64->128-bit multiply

constexpr int kShift = 32;                         // mult is nanoseconds per tick << 32
constexpr int64_t kStepAboveNanos = 1'000'000;     // a larger offset is stepped, not slewed
constexpr double kMaxSlew = 1e-3;                  // slew at most 0.1% fast or slow
constexpr double kRateTolerance = 1e-3;            // two calibration rates may differ this much
constexpr int64_t kCalibrationSleepNanos = 2'000'000;

// Each thread's last TSC-clock reading: the cheap clamp that keeps a thread's readings monotonic
// even if it migrates to a core whose counter lags, or across a re-anchoring that stepped.
// The default TLS model on purpose: initial-exec makes the dlopen()ed Python module fail to load
// ("cannot allocate memory in static TLS block") once other modules used glibc's surplus. Linked
// into an executable, the linker relaxes the access to a %fs-relative load anyway.
thread_local int64_t tls_last_nanos = 0;

inline int64_t ClampForThread(int64_t nanos) noexcept {
  if (nanos <= tls_last_nanos) return tls_last_nanos;
  if (nanos > kMaxClockNanos) nanos = kMaxClockNanos;
  tls_last_nanos = nanos;
  return nanos;
}

inline uint64_t ReadCounter() noexcept {
#if defined(__x86_64__)
  return __rdtsc();
#else
  return 0;
#endif
}

// A counter read that is not hoisted above earlier loads (calibration only).
inline uint64_t ReadCounterOrdered() noexcept {
#if defined(__x86_64__)
  _mm_lfence();
  return __rdtsc();
#else
  return 0;
#endif
}

uint64_t ToMult(long double nanos_per_tick) {
  return static_cast<uint64_t>(std::llround(nanos_per_tick * static_cast<long double>(1ull << kShift)));
}

int64_t Convert(uint64_t tsc, uint64_t base_tsc, int64_t base_nanos, uint64_t mult) noexcept {
  const auto delta = static_cast<Int128>(static_cast<int64_t>(tsc - base_tsc));
  return base_nanos + static_cast<int64_t>((delta * mult) >> kShift);
}

void SleepNanos(int64_t nanos) {
  timespec ts{0, static_cast<long>(nanos)};
  while (nanosleep(&ts, &ts) != 0) {
  }
}

}  // namespace

int64_t TscClock::MonotonicNanos() noexcept {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return int64_t{ts.tv_sec} * 1'000'000'000 + ts.tv_nsec;
}

TscClock::TscClock(Options options) : options_(options) {
  const char* why_not = options_.force_fallback ? "forced (testing hook)" : Calibrate();
  uses_tsc_ = why_not == nullptr;
  reason_ = why_not == nullptr ? "" : why_not;
  if (!uses_tsc_) return;
  fork_hooks_ = std::make_unique<ForkHooks>(
      [this] {  // no fork while a conversion is half written
        while (reanchoring_.exchange(true, std::memory_order_acquire)) sched_yield();
      },
      [this] { reanchoring_.store(false, std::memory_order_release); },
      [this] { reanchoring_.store(false, std::memory_order_release); });
}

TscClock::Pair TscClock::ReadPair() const noexcept {
  Pair best;
  int64_t best_bracket = INT64_MAX;
  for (int i = 0; i < 9; ++i) {  // the tightest bracket of a few: preemption inside one is ignored
    const uint64_t before = ReadCounterOrdered();
    const int64_t mono = MonotonicNanos();
    const uint64_t after = ReadCounterOrdered();
    if (after < before) continue;
    const auto bracket = static_cast<int64_t>(after - before);
    if (bracket < best_bracket) {
      best_bracket = bracket;
      best.tsc = before + (after - before) / 2;
      best.mono = mono;
    }
  }
  if (best_bracket == INT64_MAX) return Pair{};
  // Ticks to nanoseconds with the calibrated rate, or 1 tick = 1 ns before there is one.
  const double ns_per_tick = ticks_per_second_ > 0 ? 1e9 / ticks_per_second_ : 1.0;
  best.half_bracket_nanos = static_cast<int64_t>(std::ceil(best_bracket * ns_per_tick / 2));
  return best;
}

const char* TscClock::Calibrate() noexcept {
#if !defined(__x86_64__)
  return "not an x86-64 CPU";
#else
  unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
  if (__get_cpuid(0x80000000u, &eax, &ebx, &ecx, &edx) == 0 || eax < 0x80000007u) {
    return "no invariant TSC (CPUID leaf 0x80000007 absent)";
  }
  __get_cpuid(0x80000007u, &eax, &ebx, &ecx, &edx);
  if ((edx & (1u << 8)) == 0) return "no invariant TSC (CPUID 0x80000007 EDX bit 8 clear)";

  uint64_t previous = ReadCounterOrdered();
  for (int i = 0; i < 10'000; ++i) {
    const uint64_t now = ReadCounterOrdered();
    if (now < previous) return "the TSC went backwards during calibration";
    previous = now;
  }
  for (int attempt = 0;; ++attempt) {
    const Pair p0 = ReadPair();
    SleepNanos(kCalibrationSleepNanos);
    const Pair p1 = ReadPair();
    SleepNanos(kCalibrationSleepNanos);
    const Pair p2 = ReadPair();
    if (p0.tsc == 0 || !(p0.tsc < p1.tsc && p1.tsc < p2.tsc) || !(p0.mono < p1.mono && p1.mono < p2.mono)) {
      return "the TSC went backwards during calibration";
    }
    const double rate1 = static_cast<double>(p1.tsc - p0.tsc) / static_cast<double>(p1.mono - p0.mono);
    const double rate2 = static_cast<double>(p2.tsc - p1.tsc) / static_cast<double>(p2.mono - p1.mono);
    const double rate = static_cast<double>(p2.tsc - p0.tsc) / static_cast<double>(p2.mono - p0.mono);
    if (rate < 0.1 || rate > 20) return "the TSC rate is outside 0.1-20 GHz";
    if (std::fabs(rate1 - rate2) > kRateTolerance * rate) {
      if (attempt == 0) continue;  // one retry: a burst of load can stretch a bracket
      return "the TSC rate is unstable (two measurements disagree by more than 0.1%)";
    }
    ticks_per_second_ = rate * 1e9;
    period_ticks_ = static_cast<uint64_t>(static_cast<double>(options_.reanchor_period_nanos) * rate);
    last_pair_ = p2;
    // ReadPair measured these brackets in ticks (there was no rate yet).
    const int64_t widest = std::max({p0.half_bracket_nanos, p1.half_bracket_nanos, p2.half_bracket_nanos});
    max_half_bracket_nanos_.store(static_cast<int64_t>(std::ceil(widest / rate)), std::memory_order_relaxed);
    Publish(p2.tsc, p2.mono, ToMult(1.0L / rate), p2.tsc + period_ticks_);
    return nullptr;
  }
#endif
}

void TscClock::Publish(uint64_t base_tsc, int64_t base_nanos, uint64_t mult,
                       uint64_t next_anchor_tsc) const noexcept {
  const uint64_t seq = seq_.load(std::memory_order_relaxed);
  seq_.store(seq + 1, std::memory_order_relaxed);
  std::atomic_thread_fence(std::memory_order_release);
  base_tsc_.store(base_tsc, std::memory_order_relaxed);
  base_nanos_.store(base_nanos, std::memory_order_relaxed);
  mult_.store(mult, std::memory_order_relaxed);
  next_anchor_tsc_.store(next_anchor_tsc, std::memory_order_relaxed);
  seq_.store(seq + 2, std::memory_order_release);
}

int64_t TscClock::NowNanos() const noexcept {
  if (!uses_tsc_) return MonotonicNanos();
  const uint64_t tsc = ReadCounter();
  const uint64_t seq = seq_.load(std::memory_order_acquire);
  const uint64_t base_tsc = base_tsc_.load(std::memory_order_relaxed);
  const int64_t base_nanos = base_nanos_.load(std::memory_order_relaxed);
  const uint64_t mult = mult_.load(std::memory_order_relaxed);
  const uint64_t next_anchor_tsc = next_anchor_tsc_.load(std::memory_order_relaxed);
  std::atomic_thread_fence(std::memory_order_acquire);
  if ((seq & 1) != 0 || seq_.load(std::memory_order_relaxed) != seq) {
    return ClampForThread(MonotonicNanos());  // being re-anchored right now: rare
  }
  if (__builtin_expect(tsc >= next_anchor_tsc, 0)) Reanchor(tsc);
  return ClampForThread(Convert(tsc, base_tsc, base_nanos, mult));
}

void TscClock::Reanchor(uint64_t tsc) const noexcept {
  if (reanchoring_.exchange(true, std::memory_order_acquire)) return;  // another reader does it
  if (tsc >= next_anchor_tsc_.load(std::memory_order_relaxed)) {
    const Pair p = ReadPair();
    if (p.tsc > last_pair_.tsc && p.mono > last_pair_.mono) {
      const int64_t ours = Convert(p.tsc, base_tsc_.load(std::memory_order_relaxed),
                                   base_nanos_.load(std::memory_order_relaxed),
                                   mult_.load(std::memory_order_relaxed));
      const int64_t offset = p.mono - ours;
      // The rate over the last period: it follows NTP's adjustments of CLOCK_MONOTONIC.
      const long double ns_per_tick = static_cast<long double>(p.mono - last_pair_.mono) /
                                      static_cast<long double>(p.tsc - last_pair_.tsc);
      const long double calibrated = 1e9L / ticks_per_second_;
      if (std::llabs(offset) > kStepAboveNanos ||
          std::fabs(static_cast<double>(ns_per_tick / calibrated - 1)) > 0.01) {
        Publish(p.tsc, p.mono, ToMult(ns_per_tick), p.tsc + period_ticks_);  // step
      } else {
        // Slew: from where this clock is now, run fast or slow enough to close the offset over
        // the next period, never fast or slow by more than kMaxSlew (so never backwards).
        double slew = static_cast<double>(offset) / static_cast<double>(options_.reanchor_period_nanos);
        slew = std::fmax(-kMaxSlew, std::fmin(kMaxSlew, slew));
        Publish(p.tsc, ours, ToMult(ns_per_tick * (1 + slew)), p.tsc + period_ticks_);
      }
      last_pair_ = p;
      last_offset_nanos_.store(offset, std::memory_order_relaxed);
      if (p.half_bracket_nanos > max_half_bracket_nanos_.load(std::memory_order_relaxed)) {
        max_half_bracket_nanos_.store(p.half_bracket_nanos, std::memory_order_relaxed);
      }
      anchors_.fetch_add(1, std::memory_order_relaxed);
    }
  }
  reanchoring_.store(false, std::memory_order_release);
}

TscClockStatus TscClock::status() const noexcept {
  TscClockStatus s;
  s.uses_tsc = uses_tsc_;
  s.reason = reason_;
  s.ticks_per_second = ticks_per_second_;
  s.last_offset_nanos = last_offset_nanos_.load(std::memory_order_relaxed);
  s.max_half_bracket_nanos = max_half_bracket_nanos_.load(std::memory_order_relaxed);
  s.anchors = anchors_.load(std::memory_order_relaxed);
  return s;
}

}  // namespace internal
}  // namespace v1
}  // namespace sluice
