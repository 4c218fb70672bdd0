#include "sluice/circuit_breaker.h"

#include <catch2/catch.hpp>

#include <random>
#include <string>
#include <vector>

#include "sluice/retry_budget.h"
#include "test_support.h"

using sluice::CircuitBreaker;
using sluice::ManualClock;
using sluice::RetryBudget;
using sluice_test::ErrorOf;
using sluice_test::Value;
using State = CircuitBreaker::State;
using Result = CircuitBreaker::Result;

namespace {

struct Recorder {
  std::vector<CircuitBreaker::Transition> seen;
  std::string Reasons() const {
    std::string out;
    for (const auto& t : seen) out += std::string(t.reason) + ";";
    return out;
  }
};

std::unique_ptr<CircuitBreaker> Make(CircuitBreaker::Options o, const sluice::Clock* clock,
                                     Recorder* recorder = nullptr) {
  if (recorder != nullptr) {
    o.on_transition = [recorder](const CircuitBreaker::Transition& t) {
      recorder->seen.push_back(t);
    };
  }
  return Value(CircuitBreaker::Create(std::move(o), clock));
}

// One call through the breaker; false if it was refused.
bool Call(CircuitBreaker& b, Result result, absl::Duration latency = absl::ZeroDuration()) {
  CircuitBreaker::Permission p = b.TryAcquire();
  if (!p.allowed) return false;
  b.Record(p, result, latency);
  return true;
}

}  // namespace

TEST_CASE("breaker: consecutive failures trip it, a success in between resets the count") {
  ManualClock clock;
  Recorder r;
  auto b = Make({.consecutive_failures = 3, .failure_ratio = 0}, &clock, &r);
  CHECK(Call(*b, Result::kFailure));
  CHECK(Call(*b, Result::kFailure));
  CHECK(Call(*b, Result::kSuccess));
  CHECK(Call(*b, Result::kFailure));
  CHECK(Call(*b, Result::kFailure));
  CHECK(b->state() == State::kClosed);
  CHECK(Call(*b, Result::kFailure));
  CHECK(b->state() == State::kOpen);
  CHECK_FALSE(Call(*b, Result::kSuccess));
  REQUIRE(r.seen.size() == 1);
  CHECK(r.seen[0].from == State::kClosed);
  CHECK(r.seen[0].to == State::kOpen);
  CHECK(r.seen[0].reason == "consecutive failures");
  CHECK(r.seen[0].open_for == absl::Seconds(5));
  CHECK(r.seen[0].trips == 1);
  CHECK(b->stats().refused == 1);
}

TEST_CASE("breaker: the failure ratio trips only past the minimum number of calls") {
  ManualClock clock;
  auto b = Make({.consecutive_failures = 0, .failure_ratio = 0.5, .minimum_calls = 10}, &clock);
  // Alternate: 50 % failures, but the ratio is only judged from the 10th call on.
  for (int i = 0; i < 9; ++i) {
    CHECK(Call(*b, i % 2 == 0 ? Result::kFailure : Result::kSuccess));
    CHECK(b->state() == State::kClosed);
  }
  CHECK(b->stats().calls == 9);
  CHECK(b->stats().failures == 5);
  CHECK(Call(*b, Result::kSuccess));  // 10 calls, 5 failed: 50 %
  CHECK(b->state() == State::kOpen);
}

TEST_CASE("breaker: the window slides, old failures age out") {
  ManualClock clock;
  auto b = Make({.consecutive_failures = 0, .failure_ratio = 0.5, .window = absl::Seconds(10),
                 .minimum_calls = 4},
                &clock);
  CHECK(Call(*b, Result::kFailure));
  CHECK(Call(*b, Result::kFailure));
  CHECK(Call(*b, Result::kSuccess));
  clock.Advance(absl::Seconds(11));  // those three are out of the window now
  CHECK(b->stats().calls == 0);
  CHECK(Call(*b, Result::kFailure));
  CHECK(Call(*b, Result::kSuccess));
  CHECK(Call(*b, Result::kSuccess));
  CHECK(Call(*b, Result::kSuccess));
  CHECK(b->state() == State::kClosed);  // 1 of 4 failed
  clock.Advance(absl::Seconds(1));
  CHECK(Call(*b, Result::kFailure));
  CHECK(b->state() == State::kClosed);  // 2 of 5
  CHECK(Call(*b, Result::kFailure));
  CHECK(b->state() == State::kOpen);  // 3 of 6: 50 %
}

TEST_CASE("breaker: the slow-call ratio trips it") {
  ManualClock clock;
  Recorder r;
  auto b = Make({.consecutive_failures = 0, .failure_ratio = 0, .slow_call_ratio = 0.8,
                 .slow_call_duration = absl::Seconds(2), .minimum_calls = 5},
                &clock, &r);
  for (int i = 0; i < 4; ++i) CHECK(Call(*b, Result::kSuccess, absl::Seconds(3)));
  CHECK(b->state() == State::kClosed);
  CHECK(Call(*b, Result::kSuccess, absl::Milliseconds(100)));  // 4 of 5 slow: 80 %
  REQUIRE(r.seen.size() == 1);
  CHECK(r.seen[0].reason == "slow-call ratio");
}

TEST_CASE("breaker: half-open probes close it, a failed probe reopens it for longer") {
  ManualClock clock;
  Recorder r;
  auto b = Make({.consecutive_failures = 1, .open_time = absl::Seconds(5),
                 .open_time_multiplier = 2, .max_open_time = absl::Seconds(15),
                 .half_open_probes = 2},
                &clock, &r);
  CHECK(Call(*b, Result::kFailure));
  CHECK(b->TryAcquire().retry_after == absl::Seconds(5));
  clock.Advance(absl::Seconds(5));
  CHECK(b->state() == State::kHalfOpen);
  // Two probes at once, no third.
  CircuitBreaker::Permission p1 = b->TryAcquire(), p2 = b->TryAcquire();
  CHECK(p1.allowed);
  CHECK(p1.probe);
  CHECK(p2.allowed);
  CHECK_FALSE(b->TryAcquire().allowed);
  b->Record(p1, Result::kSuccess);
  b->Record(p2, Result::kFailure);  // reopens: trip 2 lasts 10 s
  CHECK(b->state() == State::kOpen);
  CHECK(r.seen.back().open_for == absl::Seconds(10));
  CHECK(r.seen.back().trips == 2);
  clock.Advance(absl::Seconds(10));
  CHECK(Call(*b, Result::kFailure));  // trip 3: 20 s, capped at 15
  CHECK(r.seen.back().open_for == absl::Seconds(15));
  clock.Advance(absl::Seconds(15));
  CHECK(Call(*b, Result::kSuccess));
  CHECK(b->state() == State::kHalfOpen);
  CHECK(Call(*b, Result::kSuccess));
  CHECK(b->state() == State::kClosed);
  CHECK(b->stats().trips == 0);  // recovered: the next trip is short again
  CHECK(r.Reasons() ==
        "consecutive failures;open time elapsed;probe failed;open time elapsed;probe failed;"
        "open time elapsed;probes succeeded;");
  CHECK(Call(*b, Result::kFailure));
  CHECK(r.seen.back().open_for == absl::Seconds(5));
}

TEST_CASE("breaker: an ignored probe frees its slot, results from before a trip are stale") {
  ManualClock clock;
  auto b = Make({.consecutive_failures = 1, .half_open_probes = 1}, &clock);
  CircuitBreaker::Permission early = b->TryAcquire();  // admitted while closed
  CHECK(Call(*b, Result::kFailure));                     // trips
  b->Record(early, Result::kFailure);                    // stale: counts for nothing
  clock.Advance(absl::Seconds(5));
  CircuitBreaker::Permission probe = b->TryAcquire();
  REQUIRE(probe.allowed);
  CHECK_FALSE(b->TryAcquire().allowed);
  b->Record(probe, Result::kIgnored);  // a client error says nothing about the target
  CHECK(b->state() == State::kHalfOpen);
  CHECK(Call(*b, Result::kSuccess));
  CHECK(b->state() == State::kClosed);
}

TEST_CASE("breaker: options are checked, naming the field") {
  ManualClock clock;
  CHECK_THAT(ErrorOf(CircuitBreaker::Create({.failure_ratio = 1.5}, &clock)),
             Catch::Contains("failure_ratio must be in [0, 1]"));
  CHECK_THAT(ErrorOf(CircuitBreaker::Create({.minimum_calls = 0}, &clock)),
             Catch::Contains("minimum_calls"));
  CHECK_THAT(ErrorOf(CircuitBreaker::Create({.open_time = absl::Seconds(10),
                                             .max_open_time = absl::Seconds(1)},
                                            &clock)),
             Catch::Contains("max_open_time must be >= open_time"));
  CHECK_THAT(ErrorOf(CircuitBreaker::Create({.half_open_probes = 0}, &clock)),
             Catch::Contains("half_open_probes"));
}

TEST_CASE("breaker property: it never admits while open, and opens only on a stated rule") {
  // Random schedules of results and clock moves; after every step the state must agree with a
  // plain re-computation of the rules from what the breaker was told.
  std::mt19937_64 rng(7);
  for (int round = 0; round < 200; ++round) {
    ManualClock clock;
    Recorder r;
    const int64_t consecutive = 1 + static_cast<int64_t>(rng() % 6);
    auto b = Make({.consecutive_failures = consecutive, .failure_ratio = 0,
                   .open_time = absl::Seconds(2), .open_time_multiplier = 1,
                   .half_open_probes = 1},
                  &clock, &r);
    int64_t run = 0, open_until = -1;
    for (int step = 0; step < 100; ++step) {
      clock.Advance(absl::Milliseconds(static_cast<int64_t>(rng() % 1500)));
      const int64_t now = clock.NowNanos();
      CircuitBreaker::Permission p = b->TryAcquire();
      if (open_until >= 0 && now < open_until) {
        REQUIRE_FALSE(p.allowed);
        continue;
      }
      REQUIRE(p.allowed);
      const bool fail = rng() % 3 == 0;
      b->Record(p, fail ? Result::kFailure : Result::kSuccess);
      if (p.probe) {
        open_until = fail ? now + 2 * sluice_test::kSecond : -1;
        run = 0;
      } else {
        run = fail ? run + 1 : 0;
        if (run >= consecutive) open_until = now + 2 * sluice_test::kSecond, run = 0;
      }
      REQUIRE((b->state() == State::kOpen) == (open_until > now));
    }
  }
}

TEST_CASE("retry budget: retries in flight at most ratio x requests in flight, min 3") {
  RetryBudget budget({.ratio = 0.2, .min_retries = 3});
  std::vector<RetryBudget::Request> requests;
  for (int i = 0; i < 10; ++i) requests.emplace_back(budget);
  CHECK(budget.requests_in_flight() == 10);
  std::vector<RetryBudget::Retry> retries;
  for (int i = 0; i < 3; ++i) retries.push_back(budget.TryRetry());
  for (auto& r : retries) CHECK(r);
  CHECK_FALSE(budget.TryRetry());  // 20 % of 10 is 2, the minimum 3 holds
  CHECK(budget.refused() == 1);
  for (int i = 0; i < 10; ++i) requests.emplace_back(budget);  // 20 in flight: 4 allowed
  retries.push_back(budget.TryRetry());
  CHECK(retries.back());
  CHECK_FALSE(budget.TryRetry());
  retries.clear();  // retries done: their tokens come back
  CHECK(budget.retries_in_flight() == 0);
  requests.clear();
  CHECK(budget.requests_in_flight() == 0);
  CHECK(budget.TryRetry());  // the minimum needs no requests in flight
}

TEST_CASE("retry budget: options are checked") {
  CHECK_FALSE(RetryBudget::Validate({.ratio = -1}).ok());
  CHECK_FALSE(RetryBudget::Validate({.min_retries = -1}).ok());
  CHECK(RetryBudget::Validate({}).ok());
}

TEST_CASE("full jitter backoff: bounded by base x 2^n and max, Retry-After is a floor") {
  using sluice::FullJitterBackoff;
  const absl::Duration base = absl::Milliseconds(25), max = absl::Milliseconds(250);
  CHECK(FullJitterBackoff(0, base, max, absl::ZeroDuration(), 0.0) == absl::ZeroDuration());
  CHECK(FullJitterBackoff(0, base, max, absl::ZeroDuration(), 0.5) == absl::Microseconds(12500));
  CHECK(FullJitterBackoff(2, base, max, absl::ZeroDuration(), 0.999) < absl::Milliseconds(100));
  CHECK(FullJitterBackoff(10, base, max, absl::ZeroDuration(), 0.999) <= max);
  CHECK(FullJitterBackoff(80, base, max, absl::ZeroDuration(), 0.5) == absl::Milliseconds(125));
  CHECK(FullJitterBackoff(0, base, max, absl::Seconds(2), 0.5) == absl::Seconds(2));
}
