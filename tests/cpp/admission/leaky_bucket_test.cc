#include "sluice/leaky_bucket.h"

#include <random>

#include <catch2/catch.hpp>

#include "test_support.h"

using sluice::Decision;
using sluice::LeakyBucket;
using sluice::ManualClock;
using sluice_test::ErrorOf;
using sluice_test::kMillisecond;
using sluice_test::kSecond;
using sluice_test::Value;

namespace {
std::unique_ptr<LeakyBucket> Make(int64_t rate, int64_t burst, absl::Duration max_wait,
                                  const sluice::Clock* clock) {
  LeakyBucket::Options o;
  o.rate = rate;
  o.burst = burst;
  o.max_wait = max_wait;
  return Value(LeakyBucket::Create(o, clock));
}
}  // namespace

TEST_CASE("a burst leaves at a steady rate") {
  ManualClock clock;
  auto bucket = Make(10, 1, absl::Seconds(1), &clock);
  for (int i = 0; i <= 10; ++i) {  // delays 0, 100 ms, ..., 1000 ms: all within max_wait
    Decision d = Value(bucket->TryAcquire("provider"));
    REQUIRE(d.allowed);
    CHECK(d.delay_nanos == i * 100 * kMillisecond);
  }
  Decision refused = Value(bucket->TryAcquire("provider"));
  CHECK_FALSE(refused.allowed);
  CHECK(refused.delay_nanos == 0);
  CHECK(refused.retry_after_nanos == 100 * kMillisecond);  // then the delay is back to 1 s
  clock.AdvanceNanos(100 * kMillisecond);
  Decision later = Value(bucket->TryAcquire("provider"));
  CHECK(later.allowed);
  CHECK(later.delay_nanos == kSecond);
}

TEST_CASE("an initial burst goes without delay") {
  ManualClock clock;
  auto bucket = Make(4, 3, absl::Seconds(2), &clock);
  CHECK(Value(bucket->TryAcquire("k")).delay_nanos == 0);
  CHECK(Value(bucket->TryAcquire("k")).delay_nanos == 0);
  CHECK(Value(bucket->TryAcquire("k")).delay_nanos == 0);
  CHECK(Value(bucket->TryAcquire("k")).delay_nanos == 250 * kMillisecond);
}

TEST_CASE("zero max_wait makes a leaky bucket a pure meter") {
  ManualClock clock;
  auto bucket = Make(2, 1, absl::ZeroDuration(), &clock);
  CHECK(Value(bucket->TryAcquire("k")).allowed);
  CHECK_FALSE(Value(bucket->TryAcquire("k")).allowed);
  clock.AdvanceNanos(500 * kMillisecond);
  CHECK(Value(bucket->TryAcquire("k")).allowed);
}

TEST_CASE("departures obey the rate bound and refusals are forced, over random arrivals") {
  std::mt19937_64 rng(42);
  for (int trial = 0; trial < 100; ++trial) {
    // Rates that divide a second, so departures in whole nanoseconds are exact.
    static const int64_t kRates[] = {1, 2, 4, 5, 8, 10, 16, 20, 25, 40, 50};
    const int64_t rate = kRates[rng() % std::size(kRates)];
    const int64_t burst = 1 + static_cast<int64_t>(rng() % 4);
    const int64_t max_wait = static_cast<int64_t>(rng() % 3) * kSecond;
    ManualClock clock;
    auto bucket = Make(rate, burst, absl::Nanoseconds(max_wait), &clock);
    std::vector<int64_t> departures;
    int64_t t = 0;
    for (int i = 0; i < 200; ++i) {
      t += static_cast<int64_t>(rng() % (2 * kSecond / rate + 1));
      clock.SetNanos(t);
      Decision d = Value(bucket->TryAcquire("k"));
      if (d.allowed) {
        REQUIRE(d.delay_nanos <= max_wait);
        departures.push_back(t + d.delay_nanos);
      } else {
        // Refused only because the queue was too long: the last departure is far enough ahead.
        REQUIRE(!departures.empty());
        REQUIRE(departures.back() + kSecond / rate - t > max_wait);
      }
    }
    std::sort(departures.begin(), departures.end());
    for (size_t a = 0; a < departures.size(); ++a) {
      for (size_t b = a; b < departures.size(); ++b) {
        const int64_t span = departures[b] - departures[a];
        const int64_t allowance = burst + static_cast<int64_t>(
            static_cast<__int128>(span) * rate / kSecond);
        REQUIRE(static_cast<int64_t>(b - a + 1) <= allowance);
      }
    }
  }
}

TEST_CASE("leaky bucket options and costs are validated") {
  auto error = [](LeakyBucket::Options o) { return ErrorOf(LeakyBucket::Create(o)); };
  LeakyBucket::Options o;
  CHECK(error(o) == "sluice.LeakyBucket: rate must be > 0, got 0");
  o.rate = 5;
  o.burst = 0;
  CHECK(error(o) == "sluice.LeakyBucket: burst must be >= 1, got 0");
  o.burst = 1;
  o.per = absl::ZeroDuration();
  CHECK(error(o).find("per must be > 0") != std::string::npos);
  o.per = absl::Seconds(1);
  o.max_wait = absl::Seconds(-1);
  CHECK(error(o).find("max_wait must be between 0 and 366 days") != std::string::npos);
  o.max_wait = absl::Seconds(1);
  o.max_keys = -1;
  CHECK(error(o).find("max_keys must be >= 1") != std::string::npos);

  ManualClock clock;
  auto bucket = Make(10, 2, absl::Seconds(1), &clock);
  CHECK(ErrorOf(bucket->TryAcquire("k", 0)).find("cost 0 can never fit") != std::string::npos);
  CHECK(Value(bucket->TryAcquire("k", 12)).allowed);  // 2 at once + 10 within a second
  CHECK(ErrorOf(bucket->TryAcquire("k", 13)).find("cost 13 can never fit") != std::string::npos);
}
