// RateLimiter::Refund and LeakyBucket::Refund: exact give-back of an admission that a later
// check refused, against independent oracles, in process, host and Redis strict scope.
//
// GCRA: the admissions that were not refunded must obey burst + floor(t * limit / period) over
// every interval (soundness); a refund at the admission's own time gives back the whole charge.
// Sliding: never more than `limit` non-refunded admissions in any interval of length `period`
// (soundness), and every refusal forced by the non-refunded ones (completeness: a refund
// removes exactly its admission's entries, whichever holder admitted since).
// Schedules interleave several logical holders (each refunds only its own admissions) on a
// ManualClock; a threaded case checks that concurrent refunds leave exactly the net charge.

#include <algorithm>
#include <random>
#include <thread>
#include <vector>

#include <catch2/catch.hpp>

#include "local_redis.h"
#include "sluice/leaky_bucket.h"
#include "sluice/rate_limiter.h"
#include "sluice/redis_store.h"
#include "test_support.h"

using sluice::Decision;
using sluice::ManualClock;
using sluice::RateLimiter;
using sluice::Window;
using sluice_test::RegionName;
using sluice_test::Value;

namespace {

struct Admission {
  int64_t t;
  int64_t cost;
  Decision decision;
  bool refunded = false;
};

int64_t Allowance(const Window& w, int64_t span) {
  const __int128 earned =
      static_cast<__int128>(span) * w.limit / absl::ToInt64Nanoseconds(w.period);
  return w.effective_burst() + static_cast<int64_t>(earned);
}

// The non-refunded admissions, by time.
std::vector<Admission> Kept(const std::vector<Admission>& all) {
  std::vector<Admission> kept;
  for (const Admission& a : all) {
    if (!a.refunded) kept.push_back(a);
  }
  std::stable_sort(kept.begin(), kept.end(),
                   [](const Admission& a, const Admission& b) { return a.t < b.t; });
  return kept;
}

// GCRA soundness: every interval [t_i, t_j] between kept admissions holds at most the allowance.
void CheckGcraBound(const std::vector<Window>& windows, const std::vector<Admission>& all) {
  const std::vector<Admission> kept = Kept(all);
  for (const Window& w : windows) {
    for (size_t i = 0; i < kept.size(); ++i) {
      int64_t sum = 0;
      for (size_t j = i; j < kept.size(); ++j) {
        sum += kept[j].cost;
        INFO("window " << w.limit << "/" << absl::FormatDuration(w.period) << " burst "
                       << w.effective_burst() << ": " << sum << " units in [" << kept[i].t << ", "
                       << kept[j].t << "]");
        REQUIRE(sum <= Allowance(w, kept[j].t - kept[i].t));
      }
    }
  }
}

// Sliding: non-refunded units in (t - period, t].
int64_t SlidingCount(const Window& w, const std::vector<Admission>& all, int64_t t) {
  int64_t n = 0;
  for (const Admission& a : all) {
    if (!a.refunded && a.t > t - absl::ToInt64Nanoseconds(w.period) && a.t <= t) n += a.cost;
  }
  return n;
}

// One random schedule against `limiter`: `holders` logical holders acquire, refund one of their
// own earlier admissions, or let time pass. `unit` is the clock's step (1 us for Redis).
void RunSchedule(std::mt19937_64& rng, RateLimiter& limiter, ManualClock& clock,
                 const std::vector<Window>& windows, int steps, int holders, int64_t unit) {
  const bool sliding = windows[0].kind == sluice::WindowKind::kSliding;
  int64_t max_cost = windows[0].effective_burst();
  int64_t step = absl::ToInt64Nanoseconds(windows[0].period) / windows[0].limit;
  for (const Window& w : windows) {
    max_cost = std::min(max_cost, w.effective_burst());
    step = std::min(step, absl::ToInt64Nanoseconds(w.period) / w.limit);
  }
  max_cost = std::min<int64_t>(max_cost, 3);
  step = std::max(unit, step / unit * unit);
  std::vector<Admission> all;
  std::vector<std::vector<size_t>> own(holders);
  for (int s = 0; s < steps; ++s) {
    const int holder = static_cast<int>(rng() % holders);
    const int op = static_cast<int>(rng() % 8);
    if (op < 4) {
      const int64_t cost = 1 + static_cast<int64_t>(rng() % max_cost);
      const int64_t now = clock.NowNanos();
      const Decision d = Value(limiter.TryAcquire("key", cost));
      if (sliding) {
        // Completeness (sequential): refused only if the kept admissions force it.
        bool forced = false;
        for (const Window& w : windows) forced |= SlidingCount(w, all, now) + cost > w.limit;
        INFO("t=" << now << " cost " << cost);
        REQUIRE(d.allowed == !forced);
      }
      if (d.allowed) {
        REQUIRE(d.charged_at_nanos != Decision::kNoCharge);
        own[holder].push_back(all.size());
        all.push_back({now, cost, d});
      }
    } else if (op < 6) {
      std::vector<size_t>& mine = own[holder];
      if (mine.empty()) continue;
      const size_t pick = rng() % mine.size();
      Admission& a = all[mine[pick]];
      mine.erase(mine.begin() + static_cast<std::ptrdiff_t>(pick));
      REQUIRE(limiter.Refund("key", a.cost, a.decision).ok());
      a.refunded = true;
    } else {
      clock.AdvanceNanos(step * static_cast<int64_t>(rng() % 4));
    }
  }
  if (sliding) {
    for (const Window& w : windows) {
      for (const Admission& a : all) REQUIRE(SlidingCount(w, all, a.t) <= w.limit);
    }
  } else {
    CheckGcraBound(windows, all);
  }
}

std::vector<Window> RandomGcraWindows(std::mt19937_64& rng, int64_t min_period_ms) {
  static const int64_t kLimits[] = {1, 2, 3, 5, 10, 16};
  std::vector<Window> windows;
  const int n = 1 + static_cast<int>(rng() % 2);
  for (int i = 0; i < n; ++i) {
    const int64_t limit = kLimits[rng() % std::size(kLimits)] * (i + 1);
    const int64_t burst = rng() % 2 ? 0 : 1 + static_cast<int64_t>(rng() % (limit + 2));
    windows.push_back({limit, absl::Milliseconds(min_period_ms * (1 + 9 * i)), burst});
  }
  return windows;
}

std::vector<Window> RandomSlidingWindows(std::mt19937_64& rng, int64_t min_period_ms) {
  std::vector<Window> windows;
  const int n = 1 + static_cast<int>(rng() % 2);
  for (int i = 0; i < n; ++i) {
    windows.push_back(Window::Sliding(2 + static_cast<int64_t>(rng() % 5) * (i + 1),
                                      absl::Milliseconds(min_period_ms * (1 + 4 * i))));
  }
  return windows;
}

enum class Scope { kProcess, kHost };

std::unique_ptr<RateLimiter> Local(Scope scope, const std::vector<Window>& windows,
                                   ManualClock* clock, const RegionName& region) {
  RateLimiter::Options o;
  o.windows = windows;
  o.max_keys = 16;
  if (scope == Scope::kHost) o.shared_region = region.name;
  return Value(RateLimiter::Create(o, clock));
}

}  // namespace

TEST_CASE("GCRA refunds keep the bound over random schedules: process and host") {
  std::mt19937_64 rng(4242);
  for (Scope scope : {Scope::kProcess, Scope::kHost}) {
    for (int trial = 0; trial < 40; ++trial) {
      RegionName region;
      const std::vector<Window> windows = RandomGcraWindows(rng, 10);
      ManualClock clock(1'000'000'000);
      auto limiter = Local(scope, windows, &clock, region);
      RunSchedule(rng, *limiter, clock, windows, 300, 3, 1);
    }
  }
}

TEST_CASE("sliding refunds are exact over random schedules: process and host") {
  std::mt19937_64 rng(777);
  for (Scope scope : {Scope::kProcess, Scope::kHost}) {
    for (int trial = 0; trial < 40; ++trial) {
      RegionName region;
      const std::vector<Window> windows = RandomSlidingWindows(rng, 10);
      ManualClock clock(1'000'000'000);
      auto limiter = Local(scope, windows, &clock, region);
      RunSchedule(rng, *limiter, clock, windows, 300, 3, 1);
    }
  }
}

TEST_CASE("refunds over random schedules: Redis strict, GCRA and sliding, on a scripted clock") {
  LocalRedis redis;
  std::mt19937_64 rng(99);
  for (int trial = 0; trial < 12; ++trial) {
    const bool sliding = trial % 2 == 1;
    // Redis keys expire on its real clock: periods long enough that none does mid-schedule.
    const std::vector<Window> windows =
        sliding ? RandomSlidingWindows(rng, 100'000) : RandomGcraWindows(rng, 100'000);
    ManualClock clock(1'000'000'000'000);
    sluice::RedisOptions ro;
    ro.port = redis.port();
    ro.command_timeout = absl::Seconds(5);
    ro.script_clock_for_testing = &clock;
    RateLimiter::Options o;
    o.windows = windows;
    o.cluster.store = Value(sluice::RedisStore::Create(ro));
    o.cluster.redis_name = "refund-property-" + std::to_string(trial);
    o.cluster.on_failure = sluice::FailureMode::kDeny;
    auto limiter = Value(RateLimiter::Create(o, &clock));
    RunSchedule(rng, *limiter, clock, windows, 120, 3, 1000);
  }
}

TEST_CASE("a GCRA refund at once gives back the whole charge, later only what has not refilled") {
  // Regression for a refund that moves the TAT back by the whole charge whatever the time: with
  // burst 1, an admission at 0 and one at 100 (a refill later), refunding the first must not make
  // room for a third at 100 (two at one instant against a burst of 1).
  for (Scope scope : {Scope::kProcess, Scope::kHost}) {
    RegionName region;
    ManualClock clock(0);
    auto limiter = Local(scope, {{1, absl::Nanoseconds(100), 1}}, &clock, region);
    const Decision first = Value(limiter->TryAcquire("k"));
    REQUIRE(first.allowed);
    REQUIRE_FALSE(Value(limiter->TryAcquire("k")).allowed);
    clock.AdvanceNanos(100);
    REQUIRE(Value(limiter->TryAcquire("k")).allowed);
    REQUIRE(limiter->Refund("k", 1, first).ok());
    REQUIRE_FALSE(Value(limiter->TryAcquire("k")).allowed);
    // At once: the whole charge comes back.
    clock.AdvanceNanos(100);
    const Decision second = Value(limiter->TryAcquire("k"));
    REQUIRE(second.allowed);
    REQUIRE(limiter->Refund("k", 1, second).ok());
    REQUIRE(Value(limiter->TryAcquire("k")).allowed);
    // Half-way: half of the charge (50 of 100 ns) comes back: the next unit 50 ns early.
    RegionName region2;
    auto half = Local(scope, {{1, absl::Nanoseconds(100), 2}}, &clock, region2);
    const Decision a = Value(half->TryAcquire("h"));  // TAT now + 100
    REQUIRE(Value(half->TryAcquire("h")).allowed);    // TAT now + 200: full
    clock.AdvanceNanos(50);                           // TAT now + 150
    REQUIRE(half->Refund("h", 1, a).ok());            // 50 left of a's charge: TAT now + 100
    REQUIRE(Value(half->TryAcquire("h")).allowed);    // TAT now + 200
    REQUIRE_FALSE(Value(half->TryAcquire("h")).allowed);
  }
}

TEST_CASE("a sliding refund removes its own entry, not the newest another holder added") {
  // Regression for removing the latest entry: A at 0, B at 50, refund A. Removing B instead
  // would let a request at 100 in (B, C and it inside (0, 100], 3 > 2).
  for (Scope scope : {Scope::kProcess, Scope::kHost}) {
    RegionName region;
    ManualClock clock(1000);
    auto limiter = Local(scope, {Window::Sliding(2, absl::Nanoseconds(100))}, &clock, region);
    const Decision a = Value(limiter->TryAcquire("k"));
    clock.AdvanceNanos(50);
    REQUIRE(Value(limiter->TryAcquire("k")).allowed);  // B
    REQUIRE(limiter->Refund("k", 1, a).ok());
    clock.AdvanceNanos(10);
    REQUIRE(Value(limiter->TryAcquire("k")).allowed);  // C at 1060
    clock.AdvanceNanos(40);                           // 1100: A would have left, B has not
    REQUIRE_FALSE(Value(limiter->TryAcquire("k")).allowed);
    clock.AdvanceNanos(49);
    REQUIRE_FALSE(Value(limiter->TryAcquire("k")).allowed);
    clock.AdvanceNanos(1);  // 1150: B leaves
    REQUIRE(Value(limiter->TryAcquire("k")).allowed);
  }
}

TEST_CASE("Refund refuses what it cannot give back, and peeks and refusals charge nothing") {
  ManualClock clock(0);
  RegionName region;
  auto limiter = Local(Scope::kProcess, {Window::PerSecond(2)}, &clock, region);
  const Decision a = Value(limiter->TryAcquire("k"));
  REQUIRE(Value(limiter->TryAcquire("k")).allowed);
  const Decision refused = Value(limiter->TryAcquire("k"));
  REQUIRE_FALSE(refused.allowed);
  REQUIRE(refused.charged_at_nanos == Decision::kNoCharge);
  REQUIRE(absl::IsInvalidArgument(limiter->Refund("k", 1, refused)));
  REQUIRE(absl::IsInvalidArgument(limiter->Refund("k", 0, a)));
  REQUIRE(absl::IsInvalidArgument(limiter->Refund("k", -1, a)));
  REQUIRE(absl::IsInvalidArgument(limiter->Refund("k", 3, a)));  // above the burst
  // A peek's decision charged nothing: refunding it gives nothing back.
  const Decision peek = limiter->Peek("other");
  REQUIRE(peek.allowed);
  REQUIRE(limiter->Refund("k", 1, peek).ok());
  REQUIRE_FALSE(Value(limiter->TryAcquire("k")).allowed);
  // A key never seen: nothing to do.
  REQUIRE(limiter->Refund("never-seen", 1, a).ok());
  REQUIRE(limiter->key_count() == 1);
}

TEST_CASE("concurrent admissions and refunds leave exactly the net charge", "[concurrency]") {
  for (bool sliding : {false, true}) {
    for (Scope scope : {Scope::kProcess, Scope::kHost}) {
      RegionName region;
      ManualClock clock(1'000'000);  // no time passes: the bound is the burst / limit
      const Window w = sliding ? Window::Sliding(50, absl::Seconds(1)) : Window::PerSecond(50);
      auto limiter = Local(scope, {w}, &clock, region);
      std::atomic<int64_t> net{0};
      std::vector<std::thread> threads;
      for (int t = 0; t < 4; ++t) {
        threads.emplace_back([&, t] {
          std::mt19937_64 rng(t);
          std::vector<Decision> mine;
          for (int i = 0; i < 400; ++i) {
            if (rng() % 3 != 0 || mine.empty()) {
              absl::StatusOr<Decision> d = limiter->TryAcquire("k");
              if (d.ok() && d->allowed) mine.push_back(*d), net.fetch_add(1);
            } else {
              const Decision d = mine.back();
              mine.pop_back();
              if (limiter->Refund("k", 1, d).ok()) net.fetch_sub(1);
            }
          }
        });
      }
      for (auto& th : threads) th.join();
      REQUIRE(net.load() <= 50);
      REQUIRE(limiter->Peek("k").remaining == 50 - net.load());
    }
  }
}

TEST_CASE("LeakyBucket::Refund gives a booked departure back: process, host, Redis") {
  LocalRedis redis;
  for (int scope = 0; scope < 3; ++scope) {
    RegionName region;
    ManualClock clock(1'000'000'000'000);
    sluice::LeakyBucket::Options o;
    o.rate = 10;
    o.per = absl::Seconds(1);  // one every 100 ms
    o.burst = 1;
    o.max_wait = absl::Seconds(1);
    if (scope == 1) o.shared_region = region.name;
    if (scope == 2) {
      sluice::RedisOptions ro;
      ro.port = redis.port();
      ro.script_clock_for_testing = &clock;
      o.cluster.store = Value(sluice::RedisStore::Create(ro));
      o.cluster.redis_name = "refund-leaky";
      o.cluster.on_failure = sluice::FailureMode::kDeny;
    }
    auto bucket = Value(sluice::LeakyBucket::Create(o, &clock));
    REQUIRE(Value(bucket->TryAcquire("k")).delay_nanos == 0);
    const Decision second = Value(bucket->TryAcquire("k"));
    REQUIRE(second.delay_nanos == 100'000'000);
    REQUIRE(absl::IsInvalidArgument(bucket->Refund("k", 0, second)));
    REQUIRE(bucket->Refund("k", 1, second).ok());
    // The next caller takes the refunded slot.
    REQUIRE(Value(bucket->TryAcquire("k")).delay_nanos == 100'000'000);
  }
}

TEST_CASE("decisions Redis did not make charge nothing there: their refund gives nothing back") {
  LocalRedis redis;
  ManualClock clock(1'000'000'000'000);
  sluice::RedisOptions ro;
  ro.port = redis.port();
  ro.command_timeout = absl::Milliseconds(200);
  ro.script_clock_for_testing = &clock;
  RateLimiter::Options o;
  o.windows = {Window::PerSecond(1)};
  o.cluster.store = Value(sluice::RedisStore::Create(ro));
  o.cluster.redis_name = "refund-failure-mode";
  o.cluster.on_failure = sluice::FailureMode::kAllow;
  auto limiter = Value(RateLimiter::Create(o, &clock));
  const Decision charged = Value(limiter->TryAcquire("k"));
  REQUIRE(charged.allowed);
  REQUIRE(charged.charged_at_nanos == 1'000'000'000'000);  // the (scripted) server time
  redis.Kill();
  const Decision allowed = Value(limiter->TryAcquire("k"));  // the failure mode's
  REQUIRE(allowed.allowed);
  REQUIRE(allowed.charged_at_nanos == Decision::kNoCharge);
  REQUIRE(limiter->Refund("k", 1, allowed).ok());
  // A refund Redis cannot receive is dropped: OK, and the charge stays.
  REQUIRE(limiter->Refund("k", 1, charged).ok());
  REQUIRE(limiter->failure_mode_decisions() >= 1);
}
