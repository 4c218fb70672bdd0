#include "sluice/clock.h"

#include <time.h>

#include <chrono>

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

}  // namespace v1
}  // namespace sluice
