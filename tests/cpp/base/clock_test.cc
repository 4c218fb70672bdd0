#include "sluice/clock.h"

#include <catch2/catch.hpp>

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
