#include "sluice/rate_limiter.h"

#include <catch2/catch.hpp>

#include "test_support.h"

using sluice::Decision;
using sluice::ManualClock;
using sluice::RateLimiter;
using sluice::Window;
using sluice_test::ErrorOf;
using sluice_test::kMillisecond;
using sluice_test::kSecond;
using sluice_test::Value;

namespace {
std::unique_ptr<RateLimiter> Make(std::vector<Window> windows, const sluice::Clock* clock,
                                  int64_t max_keys = int64_t{1} << 20) {
  RateLimiter::Options o;
  o.windows = std::move(windows);
  o.max_keys = max_keys;
  return Value(RateLimiter::Create(o, clock));
}
}  // namespace

TEST_CASE("a burst passes, then one per emission interval") {
  ManualClock clock;
  auto rl = Make({Window::PerSecond(10, /*burst=*/5)}, &clock);
  for (int i = 0; i < 5; ++i) {
    Decision d = Value(rl->TryAcquire("k"));
    REQUIRE(d.allowed);
    CHECK(d.remaining == 4 - i);
    CHECK(d.limit == 10);
    CHECK(d.window_nanos == kSecond);
  }
  Decision refused = Value(rl->TryAcquire("k"));
  CHECK_FALSE(refused.allowed);
  CHECK(refused.retry_after_nanos == 100 * kMillisecond);
  CHECK(refused.reset_after_nanos == 500 * kMillisecond);
  // One nanosecond early is still too early; on time is allowed.
  clock.AdvanceNanos(100 * kMillisecond - 1);
  CHECK_FALSE(Value(rl->TryAcquire("k")).allowed);
  clock.AdvanceNanos(1);
  CHECK(Value(rl->TryAcquire("k")).allowed);
}

TEST_CASE("keys are independent") {
  ManualClock clock;
  auto rl = Make({Window::PerMinute(2)}, &clock);
  CHECK(rl->Allow("a"));
  CHECK(rl->Allow("a"));
  CHECK_FALSE(rl->Allow("a"));
  CHECK(rl->Allow("b"));
  CHECK(rl->Allow(""));  // the empty key is a key like any other
}

TEST_CASE("cost takes several units at once, all or nothing") {
  ManualClock clock;
  auto rl = Make({Window::PerSecond(10)}, &clock);
  CHECK(Value(rl->TryAcquire("k", 7)).remaining == 3);
  Decision d = Value(rl->TryAcquire("k", 4));
  CHECK_FALSE(d.allowed);
  CHECK(d.remaining == 3);  // nothing was taken
  CHECK(d.retry_after_nanos == 100 * kMillisecond);
  CHECK(Value(rl->TryAcquire("k", 3)).allowed);
}

TEST_CASE("several windows: all must pass and a refusal charges none") {
  ManualClock clock;
  // 5 per second and 8 per minute.
  auto rl = Make({Window::PerSecond(5), Window::PerMinute(8)}, &clock);
  for (int i = 0; i < 5; ++i) REQUIRE(rl->Allow("k"));
  Decision d = Value(rl->TryAcquire("k"));
  CHECK_FALSE(d.allowed);
  CHECK(d.window_nanos == kSecond);  // the per-second window binds
  // The refused request must not have used the per-minute window: 3 more fit after a second.
  clock.AdvanceNanos(kSecond);
  for (int i = 0; i < 3; ++i) REQUIRE(rl->Allow("k"));
  Decision minute = Value(rl->TryAcquire("k"));
  CHECK_FALSE(minute.allowed);
  CHECK(minute.window_nanos == 60 * kSecond);
  // The minute window needs 7.5 s per unit: the first unit came back 7.5 s after t = 0.
  CHECK(minute.retry_after_nanos == 7'500 * kMillisecond - kSecond);
}

TEST_CASE("a refusal in a later window leaves earlier windows as they were") {
  ManualClock clock;
  auto rl = Make({Window::PerSecond(10), Window::PerHour(3)}, &clock);
  for (int i = 0; i < 3; ++i) REQUIRE(rl->Allow("k"));
  for (int i = 0; i < 50; ++i) REQUIRE_FALSE(rl->Allow("k"));
  Decision peek = rl->Peek("k");
  // Had the refusals charged the per-second window it would be 43 in debt and bind; it has 7
  // left, so the hour window (0 left) binds.
  CHECK(peek.remaining == 0);
  CHECK(peek.window_nanos == 3600 * kSecond);
}

TEST_CASE("Peek reports without charging, and an unknown key is whole") {
  ManualClock clock;
  auto rl = Make({Window::PerSecond(4)}, &clock);
  CHECK(rl->Peek("new").remaining == 4);
  CHECK(rl->Peek("new").allowed);
  CHECK(rl->key_count() == 0);
  REQUIRE(rl->Allow("k", 3));
  CHECK(rl->Peek("k").remaining == 1);
  CHECK(rl->Peek("k").remaining == 1);
}

TEST_CASE("bad costs are errors, not refusals") {
  ManualClock clock;
  auto rl = Make({Window::PerSecond(10, 5), Window::PerDay(100)}, &clock);
  CHECK(ErrorOf(rl->TryAcquire("k", 0)).find("cost must be >= 1, got 0") != std::string::npos);
  CHECK(ErrorOf(rl->TryAcquire("k", -3)).find("got -3") != std::string::npos);
  CHECK(ErrorOf(rl->TryAcquire("k", 6)).find("exceeds windows[0].burst 5") != std::string::npos);
  CHECK_FALSE(rl->Allow("k", 6));
  CHECK_FALSE(rl->Allow("k", 0));
  CHECK(rl->Allow("k", 5));
}

TEST_CASE("bad options name the field") {
  auto error = [](std::vector<Window> windows, int64_t max_keys = 10) {
    RateLimiter::Options o;
    o.windows = std::move(windows);
    o.max_keys = max_keys;
    return ErrorOf(RateLimiter::Create(o));
  };
  CHECK(error({}) == "sluice.RateLimiter: windows must hold 1 to 8 windows, got 0");
  CHECK(error(std::vector<Window>(9, Window::PerSecond(1))).find("got 9") != std::string::npos);
  CHECK(error({Window::PerSecond(1), Window::PerSecond(0)}) ==
        "sluice.RateLimiter: windows[1].limit must be > 0, got 0");
  CHECK(error({{5, absl::ZeroDuration(), 0}}).find("windows[0].period must be > 0") != std::string::npos);
  CHECK(error({{5, absl::Seconds(-1), 0}}).find("windows[0].period must be > 0") != std::string::npos);
  CHECK(error({{5, absl::Hours(24 * 400), 0}}).find("at most 366 days") != std::string::npos);
  CHECK(error({Window::PerSecond(5, -1)}).find("windows[0].burst must be >= 0") != std::string::npos);
  CHECK(error({{2'000'000'000, absl::Seconds(1), 0}}).find("one per nanosecond") != std::string::npos);
  CHECK(error({{1, absl::Hours(24 * 365), 100}}).find("windows[0].burst is too large") != std::string::npos);
  CHECK(error({Window::PerSecond(5)}, 0) == "sluice.RateLimiter: max_keys must be >= 1, got 0");
  RateLimiter::Options ok;
  ok.windows = {Window::PerSecond(5)};
  CHECK(ErrorOf(RateLimiter::Create(ok, nullptr)).find("clock is null") != std::string::npos);
}

TEST_CASE("limits with awkward factors stay exact, and huge primes round towards refusing") {
  ManualClock clock;
  // 7 per minute: the interval is 8.571428571428... s, not a whole number of nanoseconds.
  // Burst 2 absorbs the sub-nanosecond lateness of arriving at a rounded-up instant (with burst 1
  // GCRA rightly forgets any lateness: a bucket of 1 cannot bank the fraction).
  auto rl = Make({Window::PerMinute(7, 2)}, &clock);
  REQUIRE(rl->Allow("k"));
  REQUIRE(rl->Allow("k"));
  CHECK(Value(rl->TryAcquire("k")).retry_after_nanos == 8'571'428'572);  // ceil(60e9 / 7)
  // Unit k is due at exactly k * 60/7 s: never a nanosecond early, and no drift from rounding,
  // so the 7th is due at exactly 60 s.
  for (int64_t k = 1; k <= 7; ++k) {
    const int64_t due = (k * 60 * kSecond + 6) / 7;
    clock.SetNanos(due - 1);
    CHECK_FALSE(rl->Allow("k"));
    clock.SetNanos(due);
    CHECK(rl->Allow("k"));
  }
  CHECK(clock.NowNanos() == 60 * kSecond);

  // 1,000,003 per second (a prime): not exact, never over the bound, and short of it by at most
  // the documented rounding: under 1/16 ns per unit, so under 63 units per million.
  auto prime = Make({Window::PerSecond(1'000'003, 1000)}, &clock);
  clock.SetNanos(0);
  int64_t count = 0;
  for (int64_t t = 0; t <= kSecond; t += 997) {
    clock.SetNanos(t);
    if (prime->Allow("p")) ++count;
  }
  CHECK(count <= 1000 + 1'000'003);
  CHECK(count >= 1000 + 1'000'003 - 63 - 1);  // and one unit for the 997 ns arrival grid
}

TEST_CASE("idle keys are dropped: memory follows live keys") {
  ManualClock clock;
  auto rl = Make({Window::PerSecond(10)}, &clock);
  const int64_t empty = rl->memory_bytes();
  for (int i = 0; i < 5000; ++i) REQUIRE(rl->Allow("user-" + std::to_string(i)));
  CHECK(rl->key_count() == 5000);
  CHECK(rl->memory_bytes() > 4 * empty);
  clock.AdvanceNanos(2 * kSecond);  // every key has refilled (and the 1 s idle margin passed)
  CHECK(rl->DropIdleKeys() == 5000);
  CHECK(rl->key_count() == 0);
  CHECK(rl->memory_bytes() == empty);  // the tables shrink back
  // Dropping lost nothing: a dropped key starts whole, exactly as it had become.
  CHECK(Value(rl->TryAcquire("user-1")).remaining == 9);
}

TEST_CASE("growth drops idle keys on its own, without DropIdleKeys") {
  ManualClock clock;
  auto rl = Make({Window::PerSecond(1)}, &clock);
  for (int round = 0; round < 20; ++round) {
    for (int i = 0; i < 1000; ++i) rl->Allow("r" + std::to_string(round) + ":" + std::to_string(i));
    clock.AdvanceNanos(3 * kSecond);
  }
  // 20,000 distinct keys were seen; only the recent ones can still be held.
  CHECK(rl->key_count() < 5000);
}

TEST_CASE("max_keys: a new key is an error when all live keys are mid-window") {
  ManualClock clock;
  auto rl = Make({Window::PerMinute(10)}, &clock, /*max_keys=*/100);
  for (int i = 0; i < 100; ++i) REQUIRE(rl->Allow("k" + std::to_string(i)));
  auto full = rl->TryAcquire("newcomer");
  REQUIRE_FALSE(full.ok());
  CHECK(absl::IsResourceExhausted(full.status()));
  CHECK_FALSE(rl->Allow("newcomer"));
  CHECK(rl->Allow("k7"));  // known keys keep working
  // Once keys go idle, the newcomer fits (the full sweep is paced by the clock).
  clock.AdvanceNanos(62 * kSecond);
  CHECK(Value(rl->TryAcquire("newcomer")).allowed);
}

TEST_CASE("a clock that goes backwards refuses more, never admits more") {
  ManualClock clock(10 * kSecond);
  auto rl = Make({Window::PerSecond(2)}, &clock);
  REQUIRE(rl->Allow("k"));
  REQUIRE(rl->Allow("k"));
  clock.SetNanos(5 * kSecond);
  CHECK_FALSE(rl->Allow("k"));
  clock.SetNanos(10 * kSecond + 500 * kMillisecond);
  CHECK(rl->Allow("k"));
  CHECK_FALSE(rl->Allow("k"));
}
