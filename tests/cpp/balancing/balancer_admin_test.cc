// Balancer administration (Cooldown, Eject, Restore, the admin fields of Endpoints()) and the
// host-wide cooldowns and ejections of Options::shared_region (issues 15 and 17).
#include <catch2/catch.hpp>

#include <sys/wait.h>
#include <unistd.h>

#include <map>
#include <optional>
#include <string>
#include <vector>

#include "sluice/balancer.h"
#include "sluice/concurrency_limiter.h"
#include "test_support.h"

using sluice::AttemptOutcome;
using sluice::Balancer;
using sluice::EndpointSpec;
using sluice::Failure;
using sluice::ManualClock;
using sluice::PickRequest;
using sluice_test::ErrorOf;
using sluice_test::Value;
using Pick = Balancer::Pick;
using Strategy = Balancer::Strategy;

namespace {

constexpr int64_t kSecond = 1'000'000'000;

std::unique_ptr<Balancer> Make(const sluice::Clock* clock, Balancer::Options o = {}) {
  o.strategy = Strategy::kRoundRobin;
  o.seed = 7;
  return Value(Balancer::Create(o, clock));
}

void AddAll(Balancer& b, const std::vector<std::string>& ids) {
  for (const auto& id : ids) REQUIRE(b.AddEndpoint({.id = id}).ok());
}

std::string PickId(Balancer& b) { return Value(b.PickEndpoint(PickRequest{})).endpoint_id(); }

// The endpoints `n` picks land on, with how often.
std::map<std::string, int> Spread(Balancer& b, int n) {
  std::map<std::string, int> seen;
  for (int i = 0; i < n; ++i) seen[PickId(b)]++;
  return seen;
}

sluice::EndpointStats StatsOf(const Balancer& b, const std::string& id) {
  for (auto& s : b.Endpoints()) {
    if (s.id == id) return s;
  }
  FAIL("no endpoint " << id);
  return {};
}

// Picks until `id` comes up and completes that pick with `outcome` (others succeed).
void FailOn(Balancer& b, const std::string& id, AttemptOutcome outcome) {
  for (int i = 0; i < 100; ++i) {
    Pick p = Value(b.PickEndpoint(PickRequest{}));
    if (p.endpoint_id() == id) {
      p.Complete(outcome);
      return;
    }
    p.Complete({.http_status = 200});
  }
  FAIL("never picked " << id);
}

}  // namespace

TEST_CASE("Cooldown: skipped by picks until its end, reported with its reason, and Restore ends it") {
  ManualClock clock(100 * kSecond);
  auto b = Make(&clock);
  AddAll(*b, {"a", "b"});
  REQUIRE(b->Cooldown("a", absl::Seconds(30), Failure::kRateLimited).ok());
  CHECK(Spread(*b, 6) == std::map<std::string, int>{{"b", 6}});
  sluice::EndpointStats a = StatsOf(*b, "a");
  CHECK(a.cooldown_until_nanos == 130 * kSecond);
  CHECK(a.cooldown_reason == Failure::kRateLimited);
  CHECK(StatsOf(*b, "b").cooldown_until_nanos == 0);

  clock.Advance(absl::Seconds(29));
  CHECK(Spread(*b, 4) == std::map<std::string, int>{{"b", 4}});
  clock.Advance(absl::Seconds(1));  // its end: back by itself
  CHECK(Spread(*b, 4) == std::map<std::string, int>{{"a", 2}, {"b", 2}});
  CHECK(StatsOf(*b, "a").cooldown_until_nanos == 0);
  CHECK(StatsOf(*b, "a").cooldown_reason == Failure::kNone);

  // An administered cooldown without a class; Restore brings the endpoint back at once.
  REQUIRE(b->Cooldown("a", absl::Hours(1)).ok());
  CHECK(StatsOf(*b, "a").cooldown_reason == Failure::kNone);
  CHECK(Spread(*b, 2) == std::map<std::string, int>{{"b", 2}});
  REQUIRE(b->Restore("a").ok());
  CHECK(StatsOf(*b, "a").cooldown_until_nanos == 0);
  CHECK(Spread(*b, 4) == std::map<std::string, int>{{"a", 2}, {"b", 2}});
}

TEST_CASE("Cooldown and the automatic cooldowns: the later end wins, and Restore clears both and the run") {
  ManualClock clock(kSecond);
  Balancer::Options o;
  o.failures_before_cooldown = 2;
  auto b = Make(&clock, o);
  AddAll(*b, {"a", "b"});
  FailOn(*b, "a", {.http_status = 429});
  FailOn(*b, "a", {.http_status = 429});  // two in a row: 60 s
  CHECK(StatsOf(*b, "a").cooldown_until_nanos == 61 * kSecond);
  CHECK(StatsOf(*b, "a").cooldown_reason == Failure::kRateLimited);
  REQUIRE(b->Cooldown("a", absl::Seconds(10)).ok());  // does not shorten it
  CHECK(StatsOf(*b, "a").cooldown_until_nanos == 61 * kSecond);
  CHECK(StatsOf(*b, "a").cooldown_reason == Failure::kRateLimited);
  REQUIRE(b->Cooldown("a", absl::Seconds(120), Failure::kAuth).ok());  // lengthens it
  CHECK(StatsOf(*b, "a").cooldown_until_nanos == 121 * kSecond);
  CHECK(StatsOf(*b, "a").cooldown_reason == Failure::kAuth);

  REQUIRE(b->Restore("a").ok());
  CHECK(Spread(*b, 2) == std::map<std::string, int>{{"a", 1}, {"b", 1}});
  // Restore clears a run of failures too: a 429 before it and one after are not two in a row.
  FailOn(*b, "a", {.http_status = 429});
  REQUIRE(b->Restore("a").ok());
  FailOn(*b, "a", {.http_status = 429});
  CHECK(StatsOf(*b, "a").cooldown_until_nanos == 0);
  FailOn(*b, "a", {.http_status = 429});
  CHECK(StatsOf(*b, "a").cooldown_until_nanos == 61 * kSecond);
}

TEST_CASE("Endpoints() carries what an admin page shows: last failure and when, host in flight") {
  ManualClock clock(5 * kSecond);
  auto b = Make(&clock);
  AddAll(*b, {"a"});
  CHECK(StatsOf(*b, "a").last_failure == Failure::kNone);
  CHECK(StatsOf(*b, "a").last_failure_at_nanos == 0);
  Pick held = Value(b->PickEndpoint(PickRequest{}));
  CHECK(StatsOf(*b, "a").in_flight == 1);
  CHECK(StatsOf(*b, "a").host_in_flight == 1);  // no region: this process's
  clock.Advance(absl::Seconds(2));
  held.Complete({.http_status = 503});
  sluice::EndpointStats a = StatsOf(*b, "a");
  CHECK(a.last_failure == Failure::kServer);
  CHECK(a.last_failure_at_nanos == 7 * kSecond);
  CHECK(a.host_in_flight == 0);
  Value(b->PickEndpoint(PickRequest{})).Complete({.http_status = 200});
  CHECK(StatsOf(*b, "a").last_failure == Failure::kServer);  // the last failure, not outcome
}

TEST_CASE("Eject: takes effect past the ejection cap, counts towards it, and Restore frees the cap") {
  ManualClock clock(kSecond);
  Balancer::Options o;
  o.outlier.consecutive_failures = 2;
  o.outlier.max_ejection_percent = 50;  // 2 of 4
  o.cooldown_server = absl::ZeroDuration();
  auto b = Make(&clock, o);
  AddAll(*b, {"a", "b", "c", "d"});
  REQUIRE(b->Eject("a", absl::Minutes(5)).ok());
  REQUIRE(b->Eject("b", absl::Minutes(5)).ok());
  CHECK(StatsOf(*b, "a").ejected_until_nanos == kSecond + 300 * kSecond);
  CHECK(StatsOf(*b, "a").times_ejected == 0);  // an administered ejection is not an outlier's
  REQUIRE(b->Eject("c", absl::Minutes(1)).ok());  // beyond the cap: an operator's word stands
  CHECK(Spread(*b, 4) == std::map<std::string, int>{{"d", 4}});
  REQUIRE(b->Restore("c").ok());
  // c fails as an outlier, but a and b fill the cap: it stays in rotation.
  FailOn(*b, "c", {.http_status = 500});
  FailOn(*b, "c", {.http_status = 500});
  CHECK(Spread(*b, 4) == std::map<std::string, int>{{"c", 2}, {"d", 2}});
  CHECK(StatsOf(*b, "c").ejected_until_nanos == 0);
  // Restoring a frees a place under the cap: the next pick ejects c.
  REQUIRE(b->Restore("a").ok());
  CHECK(Spread(*b, 4) == std::map<std::string, int>{{"a", 2}, {"d", 2}});
  CHECK(StatsOf(*b, "c").ejected_until_nanos == kSecond + 30 * kSecond);
  CHECK(StatsOf(*b, "c").times_ejected == 1);
  REQUIRE(b->Restore("c").ok());
  CHECK(StatsOf(*b, "c").ejected_until_nanos == 0);
  CHECK(StatsOf(*b, "c").times_ejected == 1);  // kept: a relapse is ejected longer
}

TEST_CASE("Eject works with outlier detection off") {
  // The pick filter used to look at ejections only when outlier detection was on.
  ManualClock clock;
  Balancer::Options o;
  o.outlier.consecutive_failures = 0;
  auto b = Make(&clock, o);
  AddAll(*b, {"a", "b"});
  REQUIRE(b->Eject("a", absl::Seconds(10)).ok());
  CHECK(Spread(*b, 4) == std::map<std::string, int>{{"b", 4}});
  REQUIRE(b->Eject("b", absl::Seconds(20)).ok());
  CHECK_THAT(ErrorOf(b->PickEndpoint(PickRequest{})),
             Catch::Contains("all 2 endpoints for model '' are cooling down or ejected; the first "
                             "is back in 10.000 s"));
  clock.Advance(absl::Seconds(10));
  CHECK(PickId(*b) == "a");
}

TEST_CASE("administration is validated, naming the argument and the id") {
  ManualClock clock;
  auto b = Make(&clock);
  AddAll(*b, {"a"});
  for (absl::Duration bad : {absl::ZeroDuration(), absl::Seconds(-1), absl::Hours(24) + absl::Nanoseconds(1),
                             absl::InfiniteDuration(), -absl::InfiniteDuration()}) {
    absl::Status s = b->Cooldown("a", bad);
    CHECK(s.code() == absl::StatusCode::kInvalidArgument);
    CHECK_THAT(std::string(s.message()),
               Catch::Contains("sluice.Balancer.Cooldown: duration must be > 0 and at most 24h"));
    s = b->Eject("a", bad);
    CHECK(s.code() == absl::StatusCode::kInvalidArgument);
    CHECK_THAT(std::string(s.message()), Catch::Contains("sluice.Balancer.Eject: duration"));
  }
  CHECK(b->Cooldown("a", Balancer::kMaxHoldDuration).ok());
  CHECK(b->Eject("a", Balancer::kMaxHoldDuration).ok());
  absl::Status s = b->Cooldown("a", absl::Seconds(1), static_cast<Failure>(99));
  CHECK(s.code() == absl::StatusCode::kInvalidArgument);
  CHECK_THAT(std::string(s.message()), Catch::Contains("reason must be a Failure class, got 99"));
  for (absl::Status missing : {b->Cooldown("nope", absl::Seconds(1)),
                               b->Eject("nope", absl::Seconds(1)), b->Restore("nope")}) {
    CHECK(missing.code() == absl::StatusCode::kNotFound);
    CHECK_THAT(std::string(missing.message()), Catch::Contains("no endpoint 'nope'"));
  }
  Balancer::Options o;
  o.shared_region = std::string(191, 'r');
  CHECK_THAT(ErrorOf(Balancer::Create(o, &clock)),
             Catch::Contains("shared_region must be at most 190 characters, got 191"));
}

// ---- host scope -------------------------------------------------------------------------------

TEST_CASE("host scope: two balancers on one region share cooldowns and ejections like two workers") {
  ManualClock clock(kSecond);
  sluice_test::RegionName region;
  Balancer::Options o;
  o.shared_region = region.name;
  auto one = Make(&clock, o);
  auto two = Make(&clock, o);
  AddAll(*one, {"key-1", "key-2"});
  AddAll(*two, {"key-1", "key-2"});

  // A 429 seen by worker one cools key-1 down for worker two as well.
  FailOn(*one, "key-1", {.http_status = 429});
  CHECK(Spread(*two, 4) == std::map<std::string, int>{{"key-2", 4}});
  CHECK(StatsOf(*two, "key-1").cooldown_until_nanos == 61 * kSecond);
  CHECK(StatsOf(*two, "key-1").cooldown_reason == Failure::kRateLimited);
  CHECK(StatsOf(*two, "key-1").last_failure == Failure::kNone);  // that was worker one's
  // Restored by worker two: back for worker one.
  REQUIRE(two->Restore("key-1").ok());
  CHECK(Spread(*one, 4) == std::map<std::string, int>{{"key-1", 2}, {"key-2", 2}});

  // Administered in one, seen in the other; the shared end expires by itself.
  REQUIRE(one->Eject("key-2", absl::Seconds(30)).ok());
  CHECK(StatsOf(*two, "key-2").ejected_until_nanos == 31 * kSecond);
  CHECK(Spread(*two, 4) == std::map<std::string, int>{{"key-1", 4}});
  REQUIRE(two->Cooldown("key-1", absl::Seconds(10)).ok());
  CHECK_THAT(ErrorOf(one->PickEndpoint(PickRequest{})), Catch::Contains("back in 10.000 s"));
  clock.Advance(absl::Seconds(30));
  CHECK(Spread(*one, 4) == std::map<std::string, int>{{"key-1", 2}, {"key-2", 2}});

  // Host-wide in-flight counts in the stats.
  Pick held = Value(one->PickEndpoint(PickRequest{}));
  CHECK(StatsOf(*two, held.endpoint_id()).host_in_flight == 1);
  CHECK(StatsOf(*two, held.endpoint_id()).in_flight == 0);
}

TEST_CASE("host scope: outlier ejection in one worker holds for all, within a shared cap") {
  ManualClock clock(kSecond);
  sluice_test::RegionName region;
  Balancer::Options o;
  o.shared_region = region.name;
  o.outlier.consecutive_failures = 1;
  o.outlier.max_ejection_percent = 25;  // 1 of 4
  o.cooldown_server = absl::ZeroDuration();
  auto one = Make(&clock, o);
  auto two = Make(&clock, o);
  AddAll(*one, {"a", "b", "c", "d"});
  AddAll(*two, {"a", "b", "c", "d"});
  FailOn(*one, "a", {.http_status = 502});
  (void)PickId(*one);  // the ejection pass runs at the next pick
  CHECK(StatsOf(*two, "a").ejected_until_nanos == 31 * kSecond);
  // Worker two's own outlier finds the cap full with worker one's ejection.
  FailOn(*two, "b", {.http_status = 502});
  (void)PickId(*two);
  CHECK(StatsOf(*one, "b").ejected_until_nanos == 0);
  CHECK(Spread(*two, 6) == std::map<std::string, int>{{"b", 2}, {"c", 2}, {"d", 2}});
}

TEST_CASE("host scope: a forked worker's cooldown holds in the parent, the parent's Restore in the next worker") {
  if (!sluice_test::ForkSafeAllocator()) return;
  ManualClock clock(kSecond);  // each process has its copy, at the same reading
  sluice_test::RegionName region;
  Balancer::Options o;
  o.shared_region = region.name;
  auto here = Make(&clock, o);
  AddAll(*here, {"key-1", "key-2"});

  const pid_t child = fork();
  if (child == 0) {
    auto there = Balancer::Create(o, &clock);
    bool ok = there.ok() && (*there)->AddEndpoint({.id = "key-1"}).ok();
    if (ok) {
      auto pick = (*there)->PickEndpoint(PickRequest{});
      ok = pick.ok();
      if (ok) pick->Complete({.http_status = 429});
      ok = ok && (*there)->Eject("key-1", absl::Seconds(5)).ok();
    }
    _exit(ok ? 0 : 1);
  }
  int status = 0;
  REQUIRE(waitpid(child, &status, 0) == child);
  REQUIRE(WIFEXITED(status));
  REQUIRE(WEXITSTATUS(status) == 0);
  CHECK(StatsOf(*here, "key-1").cooldown_until_nanos == 61 * kSecond);
  CHECK(StatsOf(*here, "key-1").ejected_until_nanos == 6 * kSecond);
  CHECK(Spread(*here, 4) == std::map<std::string, int>{{"key-2", 4}});

  REQUIRE(here->Restore("key-1").ok());
  const pid_t next = fork();
  if (next == 0) {
    auto there = Balancer::Create(o, &clock);
    bool ok = there.ok() && (*there)->AddEndpoint({.id = "key-1"}).ok();
    ok = ok && (*there)->PickEndpoint(PickRequest{}).ok();  // key-1 alone: must be back
    ok = ok && (*there)->Endpoints()[0].cooldown_until_nanos == 0;
    _exit(ok ? 0 : 1);
  }
  REQUIRE(waitpid(next, &status, 0) == next);
  REQUIRE(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == 0);
}

TEST_CASE("host scope: a pick completed after its balancer is gone still cools the endpoint host-wide") {
  ManualClock clock(kSecond);
  sluice_test::RegionName region;
  Balancer::Options o;
  o.shared_region = region.name;
  std::optional<Pick> pick;
  {
    auto gone = Make(&clock, o);
    AddAll(*gone, {"a", "b"});
    pick.emplace(Value(gone->PickEndpoint(PickRequest{})));
  }
  const std::string id = pick->endpoint_id();
  pick->Complete({.http_status = 429});
  auto next = Make(&clock, o);
  AddAll(*next, {"a", "b"});
  CHECK(StatsOf(*next, id).cooldown_until_nanos == 61 * kSecond);
}

TEST_CASE("host scope: a foreign region under the endpoints' name is refused naming both, and ids are bounded") {
  ManualClock clock;
  sluice_test::RegionName region;
  {
    sluice::ConcurrencyLimiter::Options squatter;
    squatter.shared_region = region.name + ".endpoints";
    squatter.max_in_flight = 4;
    squatter.max_keys = 16;
    auto limiter = Value(sluice::ConcurrencyLimiter::Create(squatter, &clock));
    Balancer::Options o;
    o.shared_region = region.name;
    absl::StatusOr<std::unique_ptr<Balancer>> b = Balancer::Create(o, &clock);
    REQUIRE_FALSE(b.ok());
    CHECK(b.status().code() == absl::StatusCode::kFailedPrecondition);
    CHECK_THAT(std::string(b.status().message()),
               Catch::Contains("sluice.Balancer: shared_region: ") &&
                   Catch::Contains(region.name + ".endpoints") &&
                   Catch::Contains("sluice.ConcurrencyLimiter") &&
                   Catch::Contains("sluice.Balancer.endpoints"));
  }
  REQUIRE(sluice::RemoveSharedRegion(region.name + ".endpoints").ok());
  Balancer::Options o;
  o.shared_region = region.name;
  auto b = Make(&clock, o);
  for (int i = 0; i < 4096; ++i) REQUIRE(b->AddEndpoint({.id = "id-" + std::to_string(i)}).ok());
  REQUIRE(b->RemoveEndpoint("id-0").ok());
  REQUIRE(b->AddEndpoint({.id = "id-0"}).ok());  // a known id keeps its cells
  const absl::Status full = b->AddEndpoint({.id = "id-4096"});
  CHECK(full.code() == absl::StatusCode::kResourceExhausted);
  CHECK_THAT(std::string(full.message()),
             Catch::Contains("cannot add 'id-4096'") && Catch::Contains(region.name + ".endpoints"));
}
