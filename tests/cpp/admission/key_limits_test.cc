// Per-key limits (sluice::KeyLimits): one RateLimiter / TokenBudget for every key, each call
// with its own windows; ConcurrencyLimiter's per-call cap. In process, host and Redis strict
// scope, against independent oracles:
//   * two keys with different limits in one object each get exactly their own bound (GCRA:
//     allowed iff admitting keeps burst + floor(t * limit / period) over every interval ending
//     now; sliding: iff at most `limit` in the last `period`);
//   * a key whose limits change mid-run: sliding, never more than the larger limit in a period,
//     the new one over every period that starts after the change; GCRA, each admission charges
//     its own call's emission interval to the key's one TAT, so the interval's charges are at
//     most its span plus the last call's burst time, and every interval that starts after the
//     change obeys the new bound;
//   * hostile input: costs, window counts and kinds, a sliding limit above the log's capacity,
//     another object's KeyLimits, an empty one, leased mode, max_in_flight out of range.

#include <algorithm>
#include <random>
#include <thread>
#include <vector>

#include <catch2/catch.hpp>

#include "local_redis.h"
#include "sluice/concurrency_limiter.h"
#include "sluice/rate_limiter.h"
#include "sluice/redis_store.h"
#include "sluice/token_budget.h"
#include "test_support.h"

using sluice::Decision;
using sluice::KeyLimits;
using sluice::ManualClock;
using sluice::RateLimiter;
using sluice::Window;
using sluice_test::ErrorOf;
using sluice_test::RegionName;
using sluice_test::Value;

namespace {

enum class Scope { kProcess, kHost, kRedis };
const char* Name(Scope s) { return s == Scope::kProcess ? "process" : s == Scope::kHost ? "host" : "redis"; }

struct Event {
  int64_t t;
  int64_t cost;
};

int64_t Allowance(int64_t burst, int64_t limit, int64_t period, int64_t span) {
  return burst + static_cast<int64_t>(static_cast<__int128>(span) * limit / period);
}
int64_t Allowance(const Window& w, int64_t span) {
  return Allowance(w.effective_burst(), w.limit, absl::ToInt64Nanoseconds(w.period), span);
}

// GCRA: would `cost` at `t` break `w` for some interval ending at t, given `admitted` (sorted)?
bool GcraBreaks(const Window& w, const std::vector<Event>& admitted, int64_t t, int64_t cost) {
  int64_t sum = cost;
  if (sum > Allowance(w, 0)) return true;
  for (auto it = admitted.rbegin(); it != admitted.rend(); ++it) {
    sum += it->cost;
    if (sum > Allowance(w, t - it->t)) return true;
  }
  return false;
}

// Sliding: units in (t - period, t].
int64_t SlidingCount(const Window& w, const std::vector<Event>& admitted, int64_t t) {
  int64_t n = 0;
  for (const Event& e : admitted) {
    if (e.t > t - absl::ToInt64Nanoseconds(w.period) && e.t <= t) n += e.cost;
  }
  return n;
}

bool Forced(const std::vector<Window>& windows, const std::vector<Event>& admitted, int64_t t,
            int64_t cost) {
  for (const Window& w : windows) {
    if (w.kind == sluice::WindowKind::kSliding) {
      if (SlidingCount(w, admitted, t) + cost > w.limit) return true;
    } else if (GcraBreaks(w, admitted, t, cost)) {
      return true;
    }
  }
  return false;
}

// A limiter with `windows` in `scope` (Redis: on `clock` as its script clock).
std::unique_ptr<RateLimiter> MakeLimiter(Scope scope, const std::vector<Window>& windows,
                                         ManualClock* clock, const RegionName& region,
                                         const LocalRedis* redis, const std::string& name) {
  RateLimiter::Options o;
  o.windows = windows;
  o.max_keys = 64;
  if (scope == Scope::kHost) o.shared_region = region.name;
  if (scope == Scope::kRedis) {
    sluice::RedisOptions ro;
    ro.port = redis->port();
    ro.command_timeout = absl::Seconds(5);
    ro.script_clock_for_testing = clock;
    o.cluster.store = Value(sluice::RedisStore::Create(ro));
    o.cluster.redis_name = name;
    o.cluster.on_failure = sluice::FailureMode::kDeny;
  }
  return Value(RateLimiter::Create(o, clock));
}

// Two keys, each with its own limits, on one limiter: every decision is the oracle's.
void CheckTwoKeys(RateLimiter& limiter, ManualClock& clock, const std::vector<Window>& a,
                  const std::vector<Window>& b, int64_t step, uint64_t seed, int steps) {
  const KeyLimits la = Value(limiter.CompileKeyLimits(a));
  const KeyLimits lb = Value(limiter.CompileKeyLimits(b));
  REQUIRE(la.exact());
  REQUIRE(lb.exact());
  std::mt19937_64 rng(seed);
  std::vector<Event> admitted[2];
  const std::vector<Window>* windows[2] = {&a, &b};
  const KeyLimits* limits[2] = {&la, &lb};
  int allowed = 0;
  for (int s = 0; s < steps; ++s) {
    if (rng() % 3 == 0) clock.AdvanceNanos(step * static_cast<int64_t>(rng() % 3));
    const int k = static_cast<int>(rng() % 2);
    const int64_t cost = 1 + static_cast<int64_t>(rng() % 2);
    const int64_t now = clock.NowNanos();
    const Decision d = Value(limiter.TryAcquire(k == 0 ? "a" : "b", cost, *limits[k]));
    INFO("key " << k << " t=" << now << " cost " << cost);
    REQUIRE(d.allowed == !Forced(*windows[k], admitted[k], now, cost));
    if (d.allowed) admitted[k].push_back({now, cost}), ++allowed;
  }
  REQUIRE(allowed > 0);
  REQUIRE(admitted[0].size() != admitted[1].size());  // the limits made a difference
}

// A key that moves from limits `from` to `to` at the middle of the run.
void CheckChange(RateLimiter& limiter, ManualClock& clock, const Window& from, const Window& to,
                 int64_t step, uint64_t seed, int steps) {
  const KeyLimits lf = Value(limiter.CompileKeyLimits({from}));
  const KeyLimits lt = Value(limiter.CompileKeyLimits({to}));
  std::mt19937_64 rng(seed);
  std::vector<Event> admitted;
  size_t first_after = 0;  // the first admission under `to`
  int64_t change = 0;
  for (int s = 0; s < steps; ++s) {
    if (s == steps / 2) change = clock.NowNanos(), first_after = admitted.size();
    if (rng() % 2 == 0) clock.AdvanceNanos(step * static_cast<int64_t>(rng() % 3));
    const Decision d = Value(limiter.TryAcquire("k", 1, s < steps / 2 ? lf : lt));
    if (d.allowed) admitted.push_back({clock.NowNanos(), 1});
  }
  const int64_t period = absl::ToInt64Nanoseconds(std::max(from.period, to.period));
  const bool sliding = from.kind == sluice::WindowKind::kSliding;
  for (size_t i = 0; i < admitted.size(); ++i) {
    int64_t sum = 0;
    for (size_t j = i; j < admitted.size(); ++j) {
      sum += admitted[j].cost;
      const int64_t span = admitted[j].t - admitted[i].t;
      INFO("[" << admitted[i].t << ", " << admitted[j].t << "] holds " << sum << "; change at "
               << change);
      if (sliding) {
        if (span >= period) break;
        REQUIRE(sum <= std::max(from.limit, to.limit));
        if (i >= first_after && span < absl::ToInt64Nanoseconds(to.period)) {
          REQUIRE(sum <= to.limit);
        }
      } else {
        // One TAT, each admission charging its own call's emission interval: the time the
        // interval's admissions charged is at most its span plus the last one's tolerance.
        const auto in_time = [&](const Window& w, int64_t units) {  // units * period / limit
          return static_cast<__int128>(units) * absl::ToInt64Nanoseconds(w.period) *
                 (from.limit * to.limit / w.limit);
        };
        __int128 charged = 0;
        for (size_t k = i; k <= j; ++k) charged += in_time(k < first_after ? from : to, 1);
        const Window& last = j < first_after ? from : to;
        REQUIRE(charged <= static_cast<__int128>(span) * from.limit * to.limit +
                               in_time(last, last.effective_burst()));
        if (i >= first_after) REQUIRE(sum <= Allowance(to, span));
        if (j < first_after) REQUIRE(sum <= Allowance(from, span));
      }
    }
  }
}

std::vector<Scope> Scopes() { return {Scope::kProcess, Scope::kHost, Scope::kRedis}; }

}  // namespace

TEST_CASE("two keys with different GCRA limits in one limiter each get exactly their bound") {
  LocalRedis redis;
  for (Scope scope : Scopes()) {
    INFO(Name(scope));
    RegionName region;
    ManualClock clock(1'000'000'000'000);
    auto limiter = MakeLimiter(scope, {Window::PerSecond(10), Window::PerMinute(100)}, &clock,
                               region, &redis, "two-keys-gcra");
    CheckTwoKeys(*limiter, clock, {Window::PerSecond(5, 3), Window::PerMinute(40)},
                 {Window::PerSecond(20, 8), Window::PerMinute(500)}, 20'000'000, 1,
                 scope == Scope::kRedis ? 300 : 1500);
  }
}

TEST_CASE("two keys with different sliding limits in one limiter each get exactly their bound") {
  LocalRedis redis;
  for (Scope scope : Scopes()) {
    INFO(Name(scope));
    RegionName region;
    ManualClock clock(1'000'000'000'000);
    auto limiter = MakeLimiter(scope, {Window::Sliding(10, absl::Seconds(1))}, &clock, region,
                               &redis, "two-keys-sliding");
    // The second key's period is longer than the limiter's: any period is allowed.
    CheckTwoKeys(*limiter, clock, {Window::Sliding(3, absl::Seconds(1))},
                 {Window::Sliding(7, absl::Seconds(2))}, 50'000'000, 2,
                 scope == Scope::kRedis ? 300 : 1500);
  }
}

TEST_CASE("a key whose limits change keeps the larger bound, then the new one") {
  LocalRedis redis;
  for (Scope scope : Scopes()) {
    INFO(Name(scope));
    const int steps = scope == Scope::kRedis ? 300 : 1200;
    const std::pair<Window, Window> changes[] = {
        {Window::PerSecond(20, 10), Window::PerSecond(4, 2)},
        {Window::PerSecond(4, 2), Window::PerSecond(20, 10)},
        {{2, absl::Seconds(1), 6}, {50, absl::Seconds(1), 1}},
        {{50, absl::Seconds(1), 1}, {2, absl::Seconds(1), 6}}};
    for (const auto& [from, to] : changes) {
      RegionName region;
      ManualClock clock(1'000'000'000'000);
      auto limiter =
          MakeLimiter(scope, {Window::PerSecond(10)}, &clock, region, &redis, "change-gcra");
      CheckChange(*limiter, clock, from, to, 10'000'000, 3, steps);
    }
    for (const auto& [from, to] :
         {std::pair{Window::Sliding(8, absl::Seconds(1)), Window::Sliding(3, absl::Seconds(1))},
          std::pair{Window::Sliding(3, absl::Seconds(1)), Window::Sliding(8, absl::Seconds(1))}}) {
      RegionName region;
      ManualClock clock(1'000'000'000'000);
      auto limiter = MakeLimiter(scope, {Window::Sliding(8, absl::Seconds(1))}, &clock, region,
                                 &redis, "change-sliding");
      CheckChange(*limiter, clock, from, to, 30'000'000, 4, steps);
    }
  }
}

TEST_CASE("per-key limits: Allow, Start, Peek and Refund use the call's limits") {
  LocalRedis redis;
  for (Scope scope : Scopes()) {
    INFO(Name(scope));
    RegionName region;
    ManualClock clock(1'000'000'000'000);
    auto limiter =
        MakeLimiter(scope, {Window::PerMinute(100)}, &clock, region, &redis, "calls");
    const KeyLimits two = Value(limiter->CompileKeyLimits({Window::PerMinute(2)}));
    REQUIRE(limiter->Allow("k", 1, two));
    const Decision second = Value(limiter->Start("k", 1, two)).Get();
    REQUIRE(second.allowed);
    REQUIRE(second.limit == 2);
    const Decision peek = Value(limiter->Peek("k", two));
    REQUIRE_FALSE(peek.allowed);
    REQUIRE(peek.limit == 2);
    REQUIRE(peek.remaining == 0);
    REQUIRE_FALSE(limiter->Allow("k", 1, two));
    // The object's own windows read the same state: two admissions at 30 s each fill its minute.
    REQUIRE(limiter->Peek("k").remaining == 0);
    // One state, each call's emission interval: the key has used 60 s of time, which is all of
    // any burst of a minute; a window whose burst covers 80 s admits one more (20 s), and a
    // refund against the same limits gives it back.
    CHECK_FALSE(Value(limiter->TryAcquire("k", 1, Value(limiter->CompileKeyLimits(
                                                      {Window::PerMinute(3)})))).allowed);
    const KeyLimits three = Value(limiter->CompileKeyLimits({{3, absl::Minutes(1), 4}}));
    const Decision third = Value(limiter->TryAcquire("k", 1, three));
    REQUIRE(third.allowed);
    REQUIRE(third.limit == 3);
    REQUIRE(limiter->Refund("k", 1, third, three).ok());
    REQUIRE(Value(limiter->Peek("k", three)).remaining == 1);
  }
}

TEST_CASE("per-key limits: hostile input is refused, naming the field") {
  ManualClock clock(0);
  RegionName region;
  auto limiter = MakeLimiter(Scope::kProcess, {Window::PerSecond(10), Window::PerHour(100)},
                             &clock, region, nullptr, "");
  auto other = MakeLimiter(Scope::kProcess, {Window::PerSecond(10), Window::PerHour(100)}, &clock,
                           region, nullptr, "");
  const KeyLimits ok = Value(limiter->CompileKeyLimits({Window::PerSecond(5), Window::PerHour(50)}));
  REQUIRE(ok.windows().size() == 2);
  // Window count and kinds.
  CHECK_THAT(ErrorOf(limiter->CompileKeyLimits({Window::PerSecond(5)})),
             Catch::Contains("windows must hold as many windows as Options::windows (2), got 1"));
  CHECK_THAT(ErrorOf(limiter->CompileKeyLimits({})), Catch::Contains("got 0"));
  CHECK_THAT(ErrorOf(limiter->CompileKeyLimits(
                 {Window::PerSecond(5), Window::Sliding(5, absl::Hours(1))})),
             Catch::Contains("windows[1].kind must be"));
  CHECK_THAT(ErrorOf(limiter->CompileKeyLimits({Window::PerSecond(0), Window::PerHour(50)})),
             Catch::Contains("windows[0].limit must be > 0"));
  CHECK_THAT(ErrorOf(limiter->CompileKeyLimits({Window::PerSecond(5, -1), Window::PerHour(50)})),
             Catch::Contains("windows[0].burst"));
  CHECK_THAT(ErrorOf(limiter->CompileKeyLimits(
                 {Window::PerSecond(5), {50, absl::ZeroDuration(), 0}})),
             Catch::Contains("windows[1].period must be > 0"));
  // Costs against the key's bursts.
  CHECK(absl::IsInvalidArgument(limiter->TryAcquire("k", 0, ok).status()));
  CHECK(absl::IsInvalidArgument(limiter->TryAcquire("k", -3, ok).status()));
  CHECK_THAT(ErrorOf(limiter->TryAcquire("k", 6, ok)), Catch::Contains("windows[0].burst 5"));
  CHECK(absl::IsInvalidArgument(limiter->TryAcquire("k", INT64_MAX, ok).status()));
  CHECK_FALSE(limiter->Allow("k", 6, ok));
  CHECK_FALSE(limiter->Allow("k", 0, ok));
  CHECK(absl::IsInvalidArgument(limiter->Start("k", 6, ok).status()));
  // Another object's limits, and an empty one.
  CHECK_THAT(ErrorOf(other->TryAcquire("k", 1, ok)), Catch::Contains("another object"));
  CHECK_FALSE(other->Allow("k", 1, ok));
  CHECK(absl::IsInvalidArgument(other->Peek("k", ok).status()));
  CHECK(absl::IsInvalidArgument(other->Refund("k", 1, Value(limiter->TryAcquire("k", 1, ok)), ok)));
  const KeyLimits empty;
  CHECK_FALSE(static_cast<bool>(empty));
  CHECK(empty.windows().empty());
  CHECK_THAT(ErrorOf(limiter->TryAcquire("k", 1, empty)), Catch::Contains("limits is empty"));
  CHECK_FALSE(limiter->Allow("k", 1, empty));
  CHECK(absl::IsInvalidArgument(limiter->StartPeek("k", empty).status()));
  // Inexact at the limiter's scale: rounded up, reported.
  const KeyLimits thirds = Value(limiter->CompileKeyLimits({Window::PerSecond(3), Window::PerHour(7)}));
  CHECK_FALSE(thirds.exact());
  CHECK(ok.exact());
  // Sliding: the limit is at most the log's capacity.
  auto sliding = MakeLimiter(Scope::kProcess, {Window::Sliding(5, absl::Minutes(1))}, &clock,
                             region, nullptr, "");
  CHECK_THAT(ErrorOf(sliding->CompileKeyLimits({Window::Sliding(6, absl::Minutes(1))})),
             Catch::Contains("windows[0].limit must be at most Options::windows[0].limit 5"));
  CHECK_THAT(ErrorOf(sliding->CompileKeyLimits({{5, absl::Minutes(1), 3, sluice::WindowKind::kSliding}})),
             Catch::Contains("windows[0].burst"));
  CHECK(Value(sliding->CompileKeyLimits({Window::Sliding(5, absl::Hours(2))})).exact());
}

TEST_CASE("per-key limits in cluster scope: periods whole microseconds, leased mode refused") {
  LocalRedis redis;
  ManualClock clock(1'000'000'000'000);
  RegionName region;
  auto strict = MakeLimiter(Scope::kRedis, {Window::PerSecond(10)}, &clock, region, &redis, "kl");
  CHECK_THAT(ErrorOf(strict->CompileKeyLimits({{5, absl::Nanoseconds(1'000'500), 0}})),
             Catch::Contains("windows[0].period must be a whole number of microseconds"));
  auto sliding = MakeLimiter(Scope::kRedis, {Window::Sliding(10, absl::Seconds(1))}, &clock,
                             region, &redis, "kls");
  CHECK_THAT(ErrorOf(sliding->CompileKeyLimits({Window::Sliding(5, absl::Nanoseconds(1'000'500))})),
             Catch::Contains("windows[0].period must be a whole number of microseconds"));
  RateLimiter::Options o;
  o.windows = {Window::PerSecond(100)};
  sluice::RedisOptions ro;
  ro.port = redis.port();
  o.cluster.store = Value(sluice::RedisStore::Create(ro));
  o.cluster.redis_name = "kl-leased";
  o.cluster.on_failure = sluice::FailureMode::kDeny;
  o.cluster.mode = sluice::ClusterMode::kLeased;
  auto leased = Value(RateLimiter::Create(o, &clock));
  const absl::StatusOr<KeyLimits> refused = leased->CompileKeyLimits({Window::PerSecond(5)});
  CHECK(absl::IsFailedPrecondition(refused.status()));
  CHECK_THAT(ErrorOf(refused), Catch::Contains("cluster.mode"));
}

TEST_CASE("TokenBudget: per-key limits, and a reservation settles against the same limits") {
  LocalRedis redis;
  for (Scope scope : Scopes()) {
    INFO(Name(scope));
    RegionName region;
    ManualClock clock(1'000'000'000'000);
    sluice::TokenBudget::Options o;
    o.windows = {Window::PerMinute(10'000)};
    if (scope == Scope::kHost) o.shared_region = region.name;
    if (scope == Scope::kRedis) {
      sluice::RedisOptions ro;
      ro.port = redis.port();
      ro.script_clock_for_testing = &clock;
      o.cluster.store = Value(sluice::RedisStore::Create(ro));
      o.cluster.redis_name = "kl-budget";
      o.cluster.on_failure = sluice::FailureMode::kDeny;
    }
    auto budget = Value(sluice::TokenBudget::Create(o, &clock));
    const KeyLimits small = Value(budget->CompileKeyLimits({Window::PerMinute(1'000)}));
    const KeyLimits large = Value(budget->CompileKeyLimits({Window::PerMinute(50'000)}));
    CHECK(absl::IsInvalidArgument(budget->TryReserve("a", 1'001, small).status()));
    auto r = Value(budget->TryReserve("a", 800, small));
    REQUIRE(r);
    CHECK_FALSE(Value(budget->TryReserve("a", 300, small)));
    REQUIRE(Value(r.Settle(500)).remaining == 500);  // against the small limits
    CHECK(Value(budget->Peek("a", small)).remaining == 500);
    // The other key, with large limits, is far beyond the object's own.
    auto big = Value(budget->TryReserve("b", 40'000, large));
    REQUIRE(big);
    CHECK(Value(budget->Peek("b", large)).remaining == 10'000);
    CHECK(Value(budget->Charge("b", 20'000, large)).remaining == -10'000);
    CHECK(Value(big.Settle(0)).remaining == 30'000);
    const KeyLimits empty;
    CHECK(absl::IsInvalidArgument(budget->TryReserve("a", 1, empty).status()));
    CHECK_THAT(ErrorOf(budget->CompileKeyLimits({Window::PerMinute(5), Window::PerHour(5)})),
               Catch::Contains("windows must hold as many windows"));
  }
}

TEST_CASE("per-key limits under threads: each key holds its own limit", "[concurrency]") {
  for (Scope scope : {Scope::kProcess, Scope::kHost}) {
    for (bool sliding : {false, true}) {
      RegionName region;
      ManualClock clock(1'000'000);  // no time passes: each key gets exactly its limit
      const Window object = sliding ? Window::Sliding(64, absl::Seconds(1)) : Window::PerSecond(64);
      auto limiter = MakeLimiter(scope, {object}, &clock, region, nullptr, "");
      const int64_t caps[3] = {5, 17, 64};
      std::vector<KeyLimits> limits;
      for (int64_t cap : caps) {
        limits.push_back(Value(limiter->CompileKeyLimits(
            {sliding ? Window::Sliding(cap, absl::Seconds(1)) : Window::PerSecond(cap)})));
      }
      std::atomic<int64_t> admitted[3] = {0, 0, 0};
      std::vector<std::thread> threads;
      for (int t = 0; t < 4; ++t) {
        threads.emplace_back([&, t] {
          for (int i = 0; i < 300; ++i) {
            const int k = (i + t) % 3;
            if (limiter->Allow("key" + std::to_string(k), 1, limits[k])) admitted[k]++;
          }
        });
      }
      for (auto& th : threads) th.join();
      for (int k = 0; k < 3; ++k) CHECK(admitted[k].load() == caps[k]);
    }
  }
}

namespace {

std::unique_ptr<sluice::ConcurrencyLimiter> MakeConcurrency(Scope scope, int64_t max_in_flight,
                                                            ManualClock* clock,
                                                            const RegionName& region,
                                                            const LocalRedis* redis,
                                                            const std::string& name) {
  sluice::ConcurrencyLimiter::Options o;
  o.max_in_flight = max_in_flight;
  o.max_keys = 64;
  if (scope == Scope::kHost) o.shared_region = region.name;
  if (scope == Scope::kRedis) {
    sluice::RedisOptions ro;
    ro.port = redis->port();
    ro.script_clock_for_testing = clock;
    o.cluster.store = Value(sluice::RedisStore::Create(ro));
    o.cluster.redis_name = name;
    o.cluster.on_failure = sluice::FailureMode::kDeny;
  }
  return Value(sluice::ConcurrencyLimiter::Create(o, clock));
}

}  // namespace

TEST_CASE("ConcurrencyLimiter: per-call caps per key, and a cap that changes while held") {
  LocalRedis redis;
  for (Scope scope : Scopes()) {
    INFO(Name(scope));
    RegionName region;
    ManualClock clock(1'000'000'000'000);
    auto limiter = MakeConcurrency(scope, 8, &clock, region, &redis, "kl-cc");
    std::vector<sluice::ConcurrencyLimiter::Permit> a, b;
    for (int i = 0; i < 10; ++i) {
      auto pa = limiter->TryAcquire("a", 2);
      if (pa) a.push_back(std::move(pa));
      auto pb = limiter->Start("b", 5).Get();
      if (pb) b.push_back(std::move(pb));
    }
    CHECK(a.size() == 2);
    CHECK(b.size() == 5);
    CHECK(limiter->InFlight("b") == 5);
    // b's cap drops to 2 while 5 are held: refused until only 1 is left, held ones stay valid.
    auto refused = limiter->TryAcquire("b", 2);
    CHECK_FALSE(refused);
    CHECK(refused.decision().limit == 2);
    CHECK(refused.status().ok());
    for (int i = 0; i < 3; ++i) {
      REQUIRE(b.back().Release().ok());
      b.pop_back();
    }
    CHECK_FALSE(limiter->TryAcquire("b", 2));  // 2 held: at the new cap
    REQUIRE(b.back().Release().ok());
    b.pop_back();
    auto again = limiter->TryAcquire("b", 2);
    CHECK(again);
    b.push_back(std::move(again));
    // Raised to 7: five more fit on top of the 2 held, then no more.
    for (int i = 0; i < 5; ++i) {
      auto p = limiter->TryAcquire("b", 7);
      REQUIRE(p);
      b.push_back(std::move(p));
    }
    CHECK_FALSE(limiter->TryAcquire("b", 7));
    // The limiter's own cap still applies to the calls without one.
    CHECK(limiter->TryAcquire("a"));
  }
}

TEST_CASE("ConcurrencyLimiter: hostile per-call caps are refused, naming max_in_flight") {
  LocalRedis redis;
  for (Scope scope : Scopes()) {
    INFO(Name(scope));
    RegionName region;
    ManualClock clock(1'000'000'000'000);
    auto limiter = MakeConcurrency(scope, 4, &clock, region, &redis, "kl-cc-hostile");
    for (int64_t bad : {int64_t{0}, int64_t{-1}, INT64_MIN}) {
      auto p = limiter->TryAcquire("k", bad);
      CHECK_FALSE(p);
      CHECK(absl::IsInvalidArgument(p.status()));
      CHECK_THAT(std::string(p.status().message()), Catch::Contains("max_in_flight must be >= 1"));
      auto started = limiter->Start("k", bad);
      CHECK(absl::IsInvalidArgument(started.status()));
      CHECK_FALSE(started.Get());
    }
    auto above = limiter->TryAcquire("k", 5);
    if (scope == Scope::kHost) {
      CHECK_FALSE(above);
      CHECK_THAT(std::string(above.status().message()),
                 Catch::Contains("max_in_flight must be at most Options::max_in_flight (4"));
    } else {
      CHECK(above);  // process and cluster scope: any cap
      CHECK(limiter->TryAcquire("k", INT64_MAX));  // a temporary: released at once
    }
    CHECK(limiter->InFlight("k") == (scope == Scope::kHost ? 0 : 1));
  }
}

TEST_CASE("ConcurrencyLimiter: a per-call cap below the host region's slots holds under threads",
          "[concurrency]") {
  for (Scope scope : {Scope::kProcess, Scope::kHost}) {
    RegionName region;
    ManualClock clock(1'000'000);
    auto limiter = MakeConcurrency(scope, 8, &clock, region, nullptr, "");
    std::atomic<int> holding{0}, most{0}, granted{0};
    std::vector<std::thread> threads;
    for (int t = 0; t < 4; ++t) {
      threads.emplace_back([&] {
        for (int i = 0; i < 500; ++i) {
          auto p = limiter->TryAcquire("k", 3);
          if (!p) continue;
          const int now = ++holding;
          int seen = most.load();
          while (now > seen && !most.compare_exchange_weak(seen, now)) {
          }
          ++granted;
          --holding;
          (void)p.Release();
        }
      });
    }
    for (auto& th : threads) th.join();
    CHECK(most.load() <= 3);
    CHECK(granted.load() > 0);
    CHECK(limiter->InFlight("k") == 0);
  }
}
