#include "sluice/clock.h"

#include <time.h>

#include <chrono>

#include "base/tsc_clock.h"

namespace sluice {
inline namespace v1 {
namespace {

class SteadyClock final : public Clock {
 public:
  int64_t NowNanos() const noexcept override {
    return std::chrono::duration_cast<std::chrono::nanoseconds>(
               std::chrono::steady_clock::now().time_since_epoch())
        .count();
  }
};

class CoarseSteadyClock final : public Clock {
 public:
  int64_t NowNanos() const noexcept override {
    timespec ts;
    clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
    return int64_t{ts.tv_sec} * 1'000'000'000 + ts.tv_nsec;
  }
};

}  // namespace

const Clock* Clock::Steady() noexcept {
  static const SteadyClock* const clock = new SteadyClock;  // never destroyed: usable at exit
  return clock;
}

const Clock* Clock::CoarseSteady() noexcept {
  static const CoarseSteadyClock* const clock = new CoarseSteadyClock;
  return clock;
}

namespace {
internal::TscClock* TscSingleton() noexcept {
  static internal::TscClock* const clock = new internal::TscClock(internal::TscClock::Options{});
  return clock;
}
}  // namespace

const Clock* Clock::Tsc() noexcept { return TscSingleton(); }

TscClockStatus Clock::TscStatus() noexcept { return TscSingleton()->status(); }

}  // namespace v1
}  // namespace sluice
