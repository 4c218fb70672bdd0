// Leased cluster mode against its documented bound (sluice/cluster.h, ClusterMode::kLeased):
// over any interval of length t, all processes together admit at most
//     burst + floor((t + lease_ttl) * limit / period)
// per key and window. Several limiters, each with its own RedisStore (its own connection, as
// separate processes would have), share one rule on a real redis-server. Time is a ManualClock
// for the limiters and, through RedisOptions::script_clock_for_testing, for the Lua scripts too,
// so schedules are deterministic and idle gaps of seconds take no time.
#include <algorithm>
#include <cstdint>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include <catch2/catch.hpp>

#include "absl/numeric/int128.h"
#include "local_redis.h"
#include "sluice/sluice.hpp"
#include "test_support.h"

using sluice::ManualClock;
using sluice::RateLimiter;
using sluice::Window;
using sluice_test::Value;

namespace {

// The scripts read the clock as nanoseconds since 2025-01-01; start a hundred days in.
constexpr int64_t kStart = int64_t{100} * 86'400'000'000'000;

struct Holder {
  std::shared_ptr<sluice::RedisStore> store;
  std::unique_ptr<RateLimiter> limiter;
};

struct Schedule {
  std::vector<Window> windows;
  int64_t lease_units;
  absl::Duration ttl;
  int holders;
};

Holder MakeHolder(int port, const ManualClock& clock, const Schedule& s, const std::string& rule) {
  sluice::RedisOptions ro;
  ro.port = port;
  ro.command_timeout = absl::Seconds(2);  // sanitizers are slow; nothing here times out
  ro.script_clock_for_testing = &clock;
  Holder h;
  h.store = Value(sluice::RedisStore::Create(ro));
  RateLimiter::Options o;
  o.windows = s.windows;
  o.cluster.store = h.store;
  o.cluster.redis_name = rule;
  o.cluster.mode = sluice::ClusterMode::kLeased;
  o.cluster.lease_units = s.lease_units;
  o.cluster.lease_ttl = s.ttl;
  o.cluster.on_failure = sluice::FailureMode::kDeny;
  h.limiter = Value(RateLimiter::Create(o, &clock));
  return h;
}

struct Admission {
  int64_t at;
  int64_t cost;
};

// The first interval [admitted[i].at, admitted[j].at] that holds more than the bound allows for
// `w`, as a message; empty if none. 128-bit arithmetic: nothing here can overflow.
std::string FirstViolation(const std::vector<Admission>& admitted, const Window& w,
                           absl::Duration ttl) {
  const int64_t period = absl::ToInt64Nanoseconds(w.period);
  const int64_t slack = absl::ToInt64Nanoseconds(ttl);
  for (size_t i = 0; i < admitted.size(); ++i) {
    int64_t sum = 0;
    for (size_t j = i; j < admitted.size(); ++j) {
      sum += admitted[j].cost;
      const absl::int128 t = admitted[j].at - admitted[i].at + slack;
      const int64_t bound =
          w.effective_burst() + static_cast<int64_t>(t * w.limit / period);
      if (sum > bound) {
        return "admitted " + std::to_string(sum) + " in [" + std::to_string(admitted[i].at) +
               ", " + std::to_string(admitted[j].at) + "] ns, bound " + std::to_string(bound) +
               " (window " + std::to_string(w.limit) + " per " +
               absl::FormatDuration(w.period) + ", burst " +
               std::to_string(w.effective_burst()) + ")";
      }
    }
  }
  return "";
}

}  // namespace

TEST_CASE("leased mode: an expired lease gives back nothing of what has refilled since") {
  // The finding: A admits 1 (keeps 9 of a lease of 10), idles 1.2 s (its lease expires and the
  // key refills), B takes the full 100, then A was admitted 9 more within a millisecond: 109
  // against a bound of 101, because A's 9 unused units were credited on top of a full bucket.
  LocalRedis redis;
  ManualClock clock(kStart);
  const Schedule s{{Window(100, absl::Seconds(1), 100)}, 10, absl::Milliseconds(10), 2};
  Holder a = MakeHolder(redis.port(), clock, s, "finding-b");
  Holder b = MakeHolder(redis.port(), clock, s, "finding-b");
  REQUIRE(Value(a.limiter->TryAcquire("k")).allowed);
  clock.Advance(absl::Milliseconds(1200));
  int admitted = 0;
  for (int i = 0; i < 150; ++i) admitted += Value(b.limiter->TryAcquire("k")).allowed ? 1 : 0;
  CHECK(admitted == 100);
  clock.Advance(absl::Microseconds(100));
  for (int i = 0; i < 20; ++i) admitted += Value(a.limiter->TryAcquire("k")).allowed ? 1 : 0;
  CHECK(admitted <= 101);  // burst + floor((0.1 ms + 10 ms) * 100 / 1 s)
  // A lease given back at once (a request too large for what is left) is credited in full.
  clock.Advance(absl::Seconds(5));
  REQUIRE(Value(a.limiter->TryAcquire("k")).allowed);  // leases 10, keeps 9
  REQUIRE(Value(a.limiter->TryAcquire("k", 10)).allowed);  // 9 back, 10 fresh: 1 + 10 charged
  CHECK(b.limiter->Peek("k").remaining == 100 - 11);
}

TEST_CASE("leased mode: two leases of one process merge, and give back no more than each would") {
  // 100 per second, burst 100: one unit is T = 10 ms. Two threads of A ask at once (two pending
  // starts): two grants of 10 at g, 9 of each unused, merged into 18 units.
  LocalRedis redis;
  ManualClock clock(kStart);
  const Schedule s{{Window(100, absl::Seconds(1), 100)}, 10, absl::Milliseconds(10), 2};
  Holder a = MakeHolder(redis.port(), clock, s, "merge");
  Holder b = MakeHolder(redis.port(), clock, s, "merge");
  sluice::PendingDecision first = Value(a.limiter->Start("k"));
  sluice::PendingDecision second = Value(a.limiter->Start("k"));
  REQUIRE(first.Get().allowed);
  REQUIRE(second.Get().allowed);
  CHECK(a.limiter->lease_round_trips() == 2);
  clock.Advance(absl::Milliseconds(50));  // g + 5T: A's lease has expired (ttl 10 ms)
  REQUIRE(Value(b.limiter->TryAcquire("k")).allowed);  // B leases 10: 30 charged in all
  REQUIRE(b.limiter->Peek("k").remaining == 100 - 25);  // 5T of the 30 have refilled
  REQUIRE(Value(a.limiter->TryAcquire("k")).allowed);  // gives back 18, leases 10
  // Credited min(18T, g + 10T - now) = 5T: each grant alone would have got min(9T, 5T) = 5T,
  // 10T together, so the merged lease gives back less, never more (the old credit: 18T).
  CHECK(b.limiter->Peek("k").remaining == 100 - (25 - 5 + 10));
}

TEST_CASE("leased mode property: random holders, grants, idle gaps and give-backs stay bounded") {
  LocalRedis redis;
  const std::vector<Schedule> shapes = {
      {{Window(100, absl::Seconds(1), 100)}, 10, absl::Milliseconds(10), 2},
      {{Window(100, absl::Seconds(1), 100)}, 50, absl::Milliseconds(10), 3},
      {{Window(10, absl::Seconds(1), 5)}, 3, absl::Milliseconds(20), 4},
      {{Window(20, absl::Seconds(1), 10), Window(100, absl::Seconds(10), 100)}, 5,
       absl::Milliseconds(5), 3},
      {{Window(7, absl::Milliseconds(100), 3)}, 1, absl::Milliseconds(1), 2},
      {{Window(1000, absl::Seconds(60), 50)}, 20, absl::Milliseconds(200), 4},
  };
  constexpr int kSeedsPerShape = 6;
  constexpr int kSteps = 300;
  for (size_t shape = 0; shape < shapes.size(); ++shape) {
    const Schedule& s = shapes[shape];
    int64_t shortest = absl::ToInt64Microseconds(s.windows[0].period);
    int64_t max_cost = s.windows[0].effective_burst();
    for (const Window& w : s.windows) {
      shortest = std::min(shortest, absl::ToInt64Microseconds(w.period));
      max_cost = std::min(max_cost, w.effective_burst());
    }
    max_cost = std::min<int64_t>(max_cost, 3);
    const int64_t ttl_us = absl::ToInt64Microseconds(s.ttl);
    for (int seed = 0; seed < kSeedsPerShape; ++seed) {
      std::mt19937_64 rng(shape * 1000 + seed);
      auto uniform = [&](int64_t lo, int64_t hi) {
        return std::uniform_int_distribution<int64_t>(lo, hi)(rng);
      };
      ManualClock clock(kStart);
      const std::string rule = "prop-" + std::to_string(shape) + "-" + std::to_string(seed);
      std::vector<Holder> holders;
      for (int h = 0; h < s.holders; ++h) holders.push_back(MakeHolder(redis.port(), clock, s, rule));
      std::vector<Admission> admitted;
      for (int step = 0; step < kSteps; ++step) {
        // Whole microseconds: the scripts count microseconds, so no rounding blurs the bound.
        switch (uniform(0, 9)) {
          case 0: case 1: case 2: break;                                     // the same instant
          case 3: case 4: clock.Advance(absl::Microseconds(uniform(1, ttl_us))); break;
          case 5: clock.Advance(absl::Microseconds(uniform(ttl_us, 3 * ttl_us))); break;  // expiry
          case 6: case 7:
            clock.Advance(absl::Microseconds(uniform(1, shortest / 10 + 1)));  // partial refill
            break;
          case 8: clock.Advance(absl::Microseconds(uniform(shortest / 2, 2 * shortest))); break;
          case 9: clock.Advance(absl::Microseconds(uniform(2 * shortest, 5 * shortest))); break;
        }
        Holder& h = holders[uniform(0, s.holders - 1)];
        const int64_t cost = uniform(1, max_cost);
        const absl::StatusOr<sluice::Decision> d = h.limiter->TryAcquire("hot", cost);
        REQUIRE(d.ok());
        if (d->allowed) admitted.push_back({clock.NowNanos(), cost});
      }
      for (const Holder& h : holders) REQUIRE(h.limiter->failure_mode_decisions() == 0);
      for (const Window& w : s.windows) {
        const std::string violation = FirstViolation(admitted, w, s.ttl);
        INFO("shape " << shape << ", seed " << seed << ", " << admitted.size() << " admissions");
        CHECK(violation == "");
      }
    }
  }
}
