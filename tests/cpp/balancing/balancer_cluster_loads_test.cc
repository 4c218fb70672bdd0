// Cluster scope for in-flight counts (Options::redis, issue 15): the picks other hosts hold
// count in every host's load-aware rules (lib/balancing/cluster_loads.h). Balancers on separate
// stores stand for hosts; a redis-server of the test's own holds the counts; the scripts run on a
// ManualClock standing for the Redis server's, so lease expiry needs no waiting. Reads are
// asynchronous: a test waits (bounded, in real time) for one to be answered.
#include <catch2/catch.hpp>

#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "local_redis.h"
#include "sluice/balancer.h"
#include "sluice/redis_store.h"
#include "balancing/balancer_scope_support.h"
#include "test_support.h"

using sluice::Balancer;
using sluice::EndpointStats;
using sluice::ManualClock;
using sluice::PickRequest;
using sluice_test::Value;

namespace {

constexpr int64_t kSecond = 1'000'000'000;

// One process of one "host": its own clock, store and least-request balancer over a and b.
struct Host {
  ManualClock clock{kSecond};
  std::shared_ptr<sluice::RedisStore> store;
  std::unique_ptr<Balancer> balancer;

  Host(int port, const sluice::Clock* redis_clock, std::string shared_region = "",
       int64_t max_concurrency = 0, absl::Duration command_timeout = absl::Seconds(2)) {
    store = sluice_test::TestStore(port, redis_clock, command_timeout);
    Balancer::Options o;
    o.strategy = Balancer::Strategy::kLeastRequest;
    o.redis = store;
    o.redis_name = "fleet";
    o.redis_refresh = absl::Milliseconds(100);
    o.shared_region = std::move(shared_region);
    o.shared_lease = absl::Seconds(30);
    o.seed = 3;
    balancer = Value(Balancer::Create(o, &clock));
    for (const char* id : {"a", "b"}) {
      // Each serves a model of its own name, so a test can hold picks on one of them.
      REQUIRE(balancer
                  ->AddEndpoint({.id = id, .max_concurrency = max_concurrency, .labels = {{"model", id}}})
                  .ok());
    }
  }

  void Flush() { sluice_test::Flush(*store); }
  // Reads the fleet's counts now and waits until the read is applied.
  void ReadNow() {
    Flush();
    clock.Advance(absl::Milliseconds(101));
    (void)balancer->Endpoints();  // starts the read
    Flush();
  }
  EndpointStats Stats(const std::string& id) {
    for (EndpointStats& s : balancer->Endpoints()) {
      if (s.id == id) return s;
    }
    FAIL("no endpoint " << id);
    return {};
  }
  // Holds `n` picks of `id`.
  std::vector<Balancer::Pick> Hold(const std::string& id, int n) {
    std::vector<Balancer::Pick> held;
    for (int i = 0; i < n; ++i) held.push_back(Value(balancer->PickEndpoint(PickRequest{.model = id})));
    return held;
  }
};

std::multiset<std::string> HeldPicks(Balancer& b, int n, std::vector<Balancer::Pick>* keep) {
  std::multiset<std::string> seen;
  for (int i = 0; i < n; ++i) {
    keep->push_back(Value(b.PickEndpoint(PickRequest{})));
    seen.insert(keep->back().endpoint_id());
  }
  return seen;
}

}  // namespace

TEST_CASE("cluster in flight: picks one host holds count on another, and end when completed") {
  LocalRedis redis;
  ManualClock server(1000 * kSecond);
  Host one(redis.port(), &server), two(redis.port(), &server);
  std::vector<Balancer::Pick> on_a = one.Hold("a", 6);
  one.Flush();
  two.ReadNow();
  CHECK(two.Stats("a").fleet_in_flight == 6);
  CHECK(two.Stats("a").host_in_flight == 0);
  // Least request on the second host sends its picks to b until b has as many as a.
  std::vector<Balancer::Pick> keep;
  CHECK(HeldPicks(*two.balancer, 5, &keep) == std::multiset<std::string>{"b", "b", "b", "b", "b"});

  for (Balancer::Pick& p : on_a) p.Complete({.http_status = 200});
  one.Flush();
  two.ReadNow();
  CHECK(two.Stats("a").fleet_in_flight == 0);
  // And the first host sees the second's five on b.
  one.ReadNow();
  CHECK(one.Stats("b").fleet_in_flight == 5);
  CHECK(one.Stats("a").fleet_in_flight == 0);
}

TEST_CASE("cluster in flight: max_concurrency holds fleet-wide") {
  LocalRedis redis;
  ManualClock server(1000 * kSecond);
  Host one(redis.port(), &server, "", /*max_concurrency=*/3), two(redis.port(), &server, "", 3);
  std::vector<Balancer::Pick> held = one.Hold("a", 3);
  std::vector<Balancer::Pick> more = one.Hold("b", 3);
  one.Flush();
  two.ReadNow();
  auto refused = two.balancer->PickEndpoint(PickRequest{});
  REQUIRE_FALSE(refused.ok());
  CHECK(refused.status().code() == absl::StatusCode::kResourceExhausted);
}

TEST_CASE("cluster in flight fork: a killed host's picks end with their lease") {
  if (!sluice_test::ForkSafeAllocator()) return;  // the parent's store thread allocates
  LocalRedis redis;
  ManualClock server(1000 * kSecond);
  Host two(redis.port(), &server);
  const pid_t child = fork();
  if (child == 0) {
    // Another host that dies with four picks held: nothing is released.
    Host one(redis.port(), &server);
    std::vector<Balancer::Pick> held;
    bool ok = true;
    for (int i = 0; i < 4 && ok; ++i) {
      auto p = one.balancer->PickEndpoint(PickRequest{.model = "a"});
      ok = p.ok();
      if (ok) held.push_back(*std::move(p));
    }
    ok = ok && one.store->Check(absl::Seconds(5)).ok();
    _exit(ok ? 0 : 1);
  }
  int status = 0;
  REQUIRE(waitpid(child, &status, 0) == child);
  REQUIRE(WIFEXITED(status));
  REQUIRE(WEXITSTATUS(status) == 0);
  two.ReadNow();
  CHECK(two.Stats("a").fleet_in_flight == 4);
  server.Advance(absl::Seconds(31));  // past shared_lease on the server's clock
  two.ReadNow();
  CHECK(two.Stats("a").fleet_in_flight == 0);
}

TEST_CASE("cluster in flight: a host's processes sharing a region are counted once") {
  LocalRedis redis;
  ManualClock server(1000 * kSecond);
  sluice_test::RegionName region;
  Host worker1(redis.port(), &server, region.name), worker2(redis.port(), &server, region.name);
  Host elsewhere(redis.port(), &server);
  std::vector<Balancer::Pick> held = worker1.Hold("a", 3);
  worker1.Flush();
  worker2.ReadNow();
  // The host region counts worker1's picks; Redis must not add them again.
  CHECK(worker2.Stats("a").host_in_flight == 3);
  CHECK(worker2.Stats("a").fleet_in_flight == 3);
  elsewhere.ReadNow();
  CHECK(elsewhere.Stats("a").fleet_in_flight == 3);
}

TEST_CASE("cluster in flight: Redis down, no other host counts, and picks go on") {
  LocalRedis redis;
  ManualClock server(1000 * kSecond);
  Host one(redis.port(), &server), two(redis.port(), &server);
  std::vector<Balancer::Pick> held = one.Hold("a", 4);
  one.Flush();
  two.ReadNow();
  CHECK(two.Stats("a").fleet_in_flight == 4);
  redis.Kill();
  two.clock.Advance(absl::Milliseconds(101));
  (void)two.balancer->Endpoints();  // a read that fails
  two.clock.Advance(absl::Milliseconds(101));
  for (int i = 0; i < 10 && two.Stats("a").fleet_in_flight != 0; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));  // the failed reply, not a window
    two.clock.Advance(absl::Milliseconds(101));
  }
  CHECK(two.Stats("a").fleet_in_flight == 0);
  CHECK(two.balancer->PickEndpoint(PickRequest{}).ok());
  for (Balancer::Pick& p : held) p.Complete({.http_status = 200});  // released after the restart
  REQUIRE(redis.Restart());
  one.Flush();
  two.ReadNow();
  CHECK(two.Stats("a").fleet_in_flight == 0);
}

TEST_CASE("cluster in flight: a pick made and completed while Redis is stalled leaves nothing counted") {
  LocalRedis redis;
  ManualClock server(1000 * kSecond);
  Host one(redis.port(), &server, "", 0, absl::Milliseconds(200));
  Host two(redis.port(), &server);
  one.Flush();
  two.Flush();
  redis.Pause();  // SIGSTOP: the add and the removal wait in the connection, past its timeout
  {
    Balancer::Pick pick = Value(one.balancer->PickEndpoint(PickRequest{.model = "a"}));
    std::this_thread::sleep_for(std::chrono::milliseconds(400));  // past the command timeout
    pick.Complete({.http_status = 200});
  }
  redis.Resume();
  one.Flush();
  two.ReadNow();
  CHECK(two.Stats("a").fleet_in_flight == 0);
  // And counting goes on after the stall.
  std::vector<Balancer::Pick> held = one.Hold("a", 2);
  one.Flush();
  two.ReadNow();
  CHECK(two.Stats("a").fleet_in_flight == 2);
}

