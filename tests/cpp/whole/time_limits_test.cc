// Durations near the ends of time: a clock or a duration from a careless caller saturates, it
// never wraps into the past (a wrapped Retry-After would unblock a rate-limited target, a wrapped
// deadline would be bypassed, a wrapped TTL would store an entry that is never served).
#include <catch2/catch.hpp>

#include <limits>

#include "sluice/balancer.h"
#include "sluice/cache_key.h"
#include "sluice/circuit_breaker.h"
#include "sluice/clock.h"
#include "sluice/fallback_policy.h"
#include "sluice/rate_limiter.h"
#include "sluice/response_cache.h"
#include "test_support.h"

using sluice::AttemptOutcome;
using sluice::FallbackPolicy;
using sluice::ManualClock;
using sluice_test::Value;
using Kind = FallbackPolicy::Step::Kind;

namespace {

constexpr int64_t kMax = std::numeric_limits<int64_t>::max();
constexpr int64_t kMin = std::numeric_limits<int64_t>::min();

FallbackPolicy::Options TwoTargets() {
  FallbackPolicy::Options o;
  o.targets = {{.name = "primary"}, {.name = "backup"}};
  return o;
}

}  // namespace

TEST_CASE("a manual clock stops at 0 and 2^62 instead of wrapping") {
  ManualClock clock(kMax);
  CHECK(clock.NowNanos() == sluice::kMaxClockNanos);
  clock.AdvanceNanos(kMax);
  CHECK(clock.NowNanos() == sluice::kMaxClockNanos);
  clock.AdvanceNanos(kMin);
  CHECK(clock.NowNanos() == 0);
  clock.AdvanceNanos(-1);
  CHECK(clock.NowNanos() == 0);
  clock.Advance(absl::InfiniteDuration());
  CHECK(clock.NowNanos() == sluice::kMaxClockNanos);
  clock.Advance(-absl::InfiniteDuration());
  CHECK(clock.NowNanos() == 0);
  clock.SetNanos(-5);
  CHECK(clock.NowNanos() == 0);
  CHECK(ManualClock(-1).NowNanos() == 0);
}

TEST_CASE("fallback: a Retry-After of 'forever' blocks the target instead of wrapping") {
  ManualClock clock(1'000'000'000);
  auto policy = Value(FallbackPolicy::Create(TwoTargets(), &clock));
  for (const absl::Duration forever :
       {absl::Nanoseconds(kMax), absl::InfiniteDuration(), absl::Nanoseconds(kMax - 5)}) {
    FallbackPolicy::Call call = policy->Begin();
    while (call.step().kind == Kind::kAttempt && call.step().target == "primary") {
      call.Next(AttemptOutcome{.http_status = 429, .retry_after = forever});
    }
    REQUIRE(call.step().kind == Kind::kAttempt);
    CHECK(call.step().target == "backup");
    call.Next(AttemptOutcome{.http_status = 200});
    // The next call does not even try the primary: it is blocked until the end of time.
    FallbackPolicy::Call next = policy->Begin();
    REQUIRE(next.step().kind == Kind::kAttempt);
    CHECK(next.step().target == "backup");
    next.Next(AttemptOutcome{.http_status = 200});
  }
}

TEST_CASE("fallback: a huge delay never bypasses the call's deadline") {
  ManualClock clock(1'000'000'000);
  FallbackPolicy::Options o;
  o.targets = {{.name = "only"}};
  o.max_retries_per_target = 3;
  auto policy = Value(FallbackPolicy::Create(o, &clock));
  FallbackPolicy::Call call = policy->Begin();
  // A 503 with a Retry-After near the int64 range: the retry would start after the deadline.
  call.Next(AttemptOutcome{.http_status = 503, .retry_after = absl::Nanoseconds(kMax - 1)});
  CHECK(call.step().kind == Kind::kFailed);
  CHECK_FALSE(call.status().ok());
}

TEST_CASE("fallback works at the clock's origin (a clock set below 0 reads 0)") {
  ManualClock clock(-5'000'000'000);
  REQUIRE(clock.NowNanos() == 0);
  auto policy = Value(FallbackPolicy::Create(TwoTargets(), &clock));
  FallbackPolicy::Call call = policy->Begin();
  REQUIRE(call.step().kind == Kind::kAttempt);
  call.Next(AttemptOutcome{.http_status = 429, .retry_after = absl::Seconds(1)});
  while (call.step().kind == Kind::kAttempt && call.step().target == "primary") {
    call.Next(AttemptOutcome{.http_status = 429, .retry_after = absl::Seconds(1)});
  }
  REQUIRE(call.step().kind == Kind::kAttempt);
  CHECK(call.step().target == "backup");
  call.Next(AttemptOutcome{.http_status = 200});
  CHECK(call.status().ok());
  CHECK(policy->Begin().step().target == "backup");  // the primary is blocked for 1 s
  clock.Advance(absl::Seconds(1));
  CHECK(policy->Begin().step().target == "primary");
}

TEST_CASE("a breaker whose open time is 'forever' stays open") {
  ManualClock clock(1'000);
  sluice::CircuitBreaker::Options o;
  o.consecutive_failures = 1;
  o.open_time = absl::Nanoseconds(kMax);
  o.max_open_time = absl::InfiniteDuration();
  auto breaker = Value(sluice::CircuitBreaker::Create(o, &clock));
  sluice::CircuitBreaker::Permission p = breaker->TryAcquire();
  REQUIRE(p.allowed);
  breaker->Record(p, sluice::CircuitBreaker::Result::kFailure);
  CHECK_FALSE(breaker->TryAcquire().allowed);
  clock.Advance(absl::Hours(24 * 365));
  CHECK_FALSE(breaker->TryAcquire().allowed);
}

TEST_CASE("a balancer cooldown of 'forever' keeps the endpoint out") {
  ManualClock clock(1'000);
  sluice::Balancer::Options o;
  o.strategy = sluice::Balancer::Strategy::kRoundRobin;
  o.cooldown_rate_limited = absl::Nanoseconds(kMax);
  auto balancer = Value(sluice::Balancer::Create(o, &clock));
  REQUIRE(balancer->AddEndpoint({.id = "a"}).ok());
  REQUIRE(balancer->AddEndpoint({.id = "b"}).ok());
  auto first = Value(balancer->PickEndpoint(sluice::PickRequest{}));
  const std::string cooled = first.endpoint().id;
  first.Complete({.http_status = 429});
  for (int i = 0; i < 10; ++i) {
    auto pick = Value(balancer->PickEndpoint(sluice::PickRequest{}));
    CHECK(pick.endpoint().id != cooled);
    pick.Complete({.http_status = 200});
  }
}

TEST_CASE("a cache entry with a TTL of 'forever' is stored and served") {
  ManualClock clock(1'000);
  auto cache = Value(sluice::ResponseCache::Create({}, &clock));
  const sluice::CacheKey key = Value(sluice::MakeCacheKey(R"({"model":"m","q":1})"));
  for (const absl::Duration ttl : {absl::Nanoseconds(kMax), absl::InfiniteDuration(),
                                   sluice::ResponseCache::kMaxTtl * 2}) {
    sluice::CachedResponse answer;
    answer.body = sluice::Bytes(std::string("answer"));
    REQUIRE(cache->Put(key, std::move(answer), ttl));
    REQUIRE(cache->Get(key) != nullptr);
    clock.Advance(absl::Hours(24 * 365 * 10));
    CHECK(cache->Get(key) != nullptr);
  }
}

TEST_CASE("a limiter's `now` may jump from one end of the int64 range to the other") {
  // Undefined behaviour before (UBSan, asan preset): TAT - now overflowed once `now` went back by
  // more than 2^62 units.
  for (const sluice::Window& window : {sluice::Window::PerSecond(10), sluice::Window{7, absl::Seconds(3), 2}}) {
    sluice::RateLimiter::Options o;
    o.windows = {window, sluice::Window::PerHour(1000)};
    auto limiter = Value(sluice::RateLimiter::Create(o));
    for (const int64_t now : {kMax, kMin, kMax - 1, kMin + 1, int64_t{0}, kMax}) {
      const absl::StatusOr<sluice::Decision> d = limiter->TryAcquireAt("k", 1, now);
      REQUIRE(d.ok());
      CHECK(d->remaining <= d->limit);
    }
    o.windows = {window};
    auto single = Value(sluice::RateLimiter::Create(o));
    for (const int64_t now : {kMax, kMin, kMax, kMin}) {
      REQUIRE(single->TryAcquireAt("k", 1, now).ok());
    }
  }
}
