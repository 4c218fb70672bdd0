#include "sluice/clock.h"

#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <atomic>
#include <catch2/catch.hpp>
#include <cstdlib>
#include <string>
#include <thread>
#include <vector>

#include "base/tsc_clock.h"
#include "sluice/rate_limiter.h"

TEST_CASE("ManualClock moves only when told to") {
  sluice::ManualClock clock(100);
  CHECK(clock.NowNanos() == 100);
  CHECK(clock.NowNanos() == 100);
  clock.Advance(absl::Milliseconds(3));
  CHECK(clock.NowNanos() == 100 + 3'000'000);
  clock.AdvanceNanos(-50);
  CHECK(clock.NowNanos() == 3'000'050);
  clock.SetNanos(7);
  CHECK(clock.NowNanos() == 7);
}

TEST_CASE("steady clocks never go backwards") {
  for (const sluice::Clock* clock : {sluice::Clock::Steady(), sluice::Clock::CoarseSteady()}) {
    int64_t last = clock->NowNanos();
    for (int i = 0; i < 10000; ++i) {
      const int64_t now = clock->NowNanos();
      REQUIRE(now >= last);
      last = now;
    }
  }
  CHECK(sluice::Clock::Steady() == sluice::Clock::Steady());
}

// ---- Clock::Tsc() ------------------------------------------------------------------------------
// Timing never decides these tests: the bounds are correctness bounds (a clock on the wrong
// timeline or at the wrong rate misses them by orders of magnitude), with generous tolerance for
// a loaded machine.

namespace {

int64_t MonotonicNanos() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return int64_t{ts.tv_sec} * 1'000'000'000 + ts.tv_nsec;
}

// Far above the measured offsets (under 1 us) and far below any rate or timeline error.
constexpr int64_t kAgreementNanos = 1'000'000;

// Every reading of `clock` lies within kAgreementNanos of CLOCK_MONOTONIC readings bracketing it.
void CheckAgreesWithMonotonic(const sluice::Clock& clock, int reads) {
  for (int i = 0; i < reads; ++i) {
    const int64_t before = MonotonicNanos();
    const int64_t now = clock.NowNanos();
    const int64_t after = MonotonicNanos();
    REQUIRE(now >= before - kAgreementNanos);
    REQUIRE(now <= after + kAgreementNanos);
  }
}

void CheckMonotonicUnderThreads(const sluice::Clock& clock) {
  std::atomic<int> backwards{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&] {
      int64_t last = clock.NowNanos();
      for (int i = 0; i < 200'000; ++i) {
        const int64_t now = clock.NowNanos();
        if (now < last) backwards.fetch_add(1);
        last = now;
      }
    });
  }
  for (auto& t : threads) t.join();
  CHECK(backwards.load() == 0);
}

}  // namespace

TEST_CASE("Clock::Tsc is a singleton that says how it reads time") {
  CHECK(sluice::Clock::Tsc() == sluice::Clock::Tsc());
  const sluice::TscClockStatus status = sluice::Clock::TscStatus();
  INFO("reason: " << status.reason << ", GHz: " << status.ticks_per_second / 1e9);
  if (status.uses_tsc) {
    CHECK(std::string(status.reason).empty());
    CHECK(status.ticks_per_second >= 1e8);
    CHECK(status.ticks_per_second <= 2e10);
  } else {
    CHECK_FALSE(std::string(status.reason).empty());
    CHECK(status.ticks_per_second == 0);
  }
  const int64_t now = sluice::Clock::Tsc()->NowNanos();
  CHECK(now >= 0);
  CHECK(now <= sluice::kMaxClockNanos);
}

TEST_CASE("Clock::Tsc reads on the CLOCK_MONOTONIC timeline") {
  CheckAgreesWithMonotonic(*sluice::Clock::Tsc(), 10'000);
  // Over a short real interval (a bounded sleep: this checks the calibrated rate), the elapsed
  // times agree too.
  const int64_t tsc0 = sluice::Clock::Tsc()->NowNanos(), mono0 = MonotonicNanos();
  timespec five_ms{0, 5'000'000};
  nanosleep(&five_ms, nullptr);
  const int64_t tsc1 = sluice::Clock::Tsc()->NowNanos(), mono1 = MonotonicNanos();
  CHECK(std::llabs((tsc1 - tsc0) - (mono1 - mono0)) <= kAgreementNanos);
}

TEST_CASE("Clock::Tsc never goes backwards for a thread, under threads") {
  CheckMonotonicUnderThreads(*sluice::Clock::Tsc());
}

TEST_CASE("a TSC clock re-anchored every millisecond stays monotonic and on the timeline") {
  sluice::internal::TscClock::Options options;
  options.reanchor_period_nanos = 1'000'000;
  sluice::internal::TscClock clock(options);
  if (!clock.status().uses_tsc) {
    WARN("no usable TSC here (" << clock.status().reason << "): the fallback is checked below");
  }
  CheckMonotonicUnderThreads(clock);
  const int64_t start = MonotonicNanos();
  while (MonotonicNanos() - start < 20'000'000) CheckAgreesWithMonotonic(clock, 100);
  const sluice::TscClockStatus status = clock.status();
  if (status.uses_tsc) {
    CHECK(status.anchors > 0);  // 20 ms of reads crossed many 1 ms periods
    CHECK(std::llabs(status.last_offset_nanos) <= kAgreementNanos);
    INFO("last offset " << status.last_offset_nanos << " ns, widest half-bracket "
                        << status.max_half_bracket_nanos << " ns, anchors " << status.anchors);
    CHECK(status.max_half_bracket_nanos < kAgreementNanos);
  }
}

TEST_CASE("the forced fallback reads CLOCK_MONOTONIC and says so") {
  sluice::internal::TscClock::Options options;
  options.force_fallback = true;
  sluice::internal::TscClock clock(options);
  const sluice::TscClockStatus status = clock.status();
  CHECK_FALSE(status.uses_tsc);
  CHECK(std::string(status.reason) == "forced (testing hook)");
  CHECK(status.ticks_per_second == 0);
  for (int i = 0; i < 1000; ++i) {
    const int64_t before = MonotonicNanos();
    const int64_t now = clock.NowNanos();
    const int64_t after = MonotonicNanos();
    REQUIRE(before <= now);  // exactly CLOCK_MONOTONIC: no tolerance
    REQUIRE(now <= after);
  }
  CheckMonotonicUnderThreads(clock);
}

TEST_CASE("a forked child keeps the TSC calibration") {
  const sluice::TscClockStatus parent = sluice::Clock::TscStatus();  // calibrated before fork
  const pid_t pid = fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    const sluice::TscClockStatus child = sluice::Clock::TscStatus();
    bool ok = child.uses_tsc == parent.uses_tsc &&
              child.ticks_per_second == parent.ticks_per_second;
    for (int i = 0; i < 1000 && ok; ++i) {
      const int64_t before = MonotonicNanos();
      const int64_t now = sluice::Clock::Tsc()->NowNanos();
      const int64_t after = MonotonicNanos();
      ok = now >= before - kAgreementNanos && now <= after + kAgreementNanos;
    }
    _exit(ok ? 0 : 1);
  }
  int status = 0;
  REQUIRE(waitpid(pid, &status, 0) == pid);
  REQUIRE(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == 0);
}

TEST_CASE("a RateLimiter on Clock::Tsc decides like one on Clock::Steady") {
  // 100k a second, burst 10, decided in real time for 20 ms, the two limiters interleaved so
  // both see the same schedule. The clocks agree to within microseconds, so the admitted counts
  // differ by at most a few; a clock at a wrong rate or on a wrong timeline differs by hundreds.
  sluice::RateLimiter::Options options;
  options.windows = {sluice::Window::PerSecond(100'000, 10)};
  auto on_tsc = *sluice::RateLimiter::Create(options, sluice::Clock::Tsc());
  auto on_steady = *sluice::RateLimiter::Create(options, sluice::Clock::Steady());
  int64_t admitted_tsc = 0, admitted_steady = 0;
  const int64_t start = MonotonicNanos();
  while (MonotonicNanos() - start < 20'000'000) {
    admitted_tsc += on_tsc->Allow("k") ? 1 : 0;
    admitted_steady += on_steady->Allow("k") ? 1 : 0;
  }
  INFO("admitted on tsc " << admitted_tsc << ", on steady " << admitted_steady);
  CHECK(admitted_steady >= 10 + 200);  // the schedule did run (20 ms at 100 a ms, less if starved)
  CHECK(std::llabs(admitted_tsc - admitted_steady) <= 10 + admitted_steady / 20);
}
