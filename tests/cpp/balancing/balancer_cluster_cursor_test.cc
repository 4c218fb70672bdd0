// Cluster scope for round robin (Options::redis, issue 15): the hosts take the endpoints in
// turn together, from one counter in Redis drawn a pick ahead (lib/balancing/cluster_cursor.h).
// Balancers on separate stores stand for hosts; a redis-server of the test's own holds the
// counter. Draws are asynchronous: a test waits (bounded, in real time) for a store's replies.
#include <catch2/catch.hpp>

#include <algorithm>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "balancing/balancer_scope_support.h"
#include "local_redis.h"
#include "sluice/balancer.h"
#include "sluice/redis_store.h"
#include "test_support.h"

using sluice::Balancer;
using sluice::ManualClock;
using sluice::PickRequest;
using sluice_test::Value;

namespace {

// One process of one "host": its own clock, store and round-robin balancer over e0..e3.
struct Host {
  ManualClock clock;
  std::shared_ptr<sluice::RedisStore> store;
  std::unique_ptr<Balancer> balancer;

  explicit Host(int port, bool fleet = true) {
    store = sluice_test::TestStore(port, /*script_clock=*/nullptr);
    Balancer::Options o;
    o.strategy = Balancer::Strategy::kRoundRobin;
    if (fleet) {
      o.redis = store;
      o.redis_name = "fleet";
    }
    balancer = Value(Balancer::Create(o, &clock));
    for (int i = 0; i < 4; ++i) {
      REQUIRE(balancer->AddEndpoint({.id = "e" + std::to_string(i)}).ok());
    }
  }

  // Waits until every command this host sent so far is answered (its draws applied).
  void Flush() { sluice_test::Flush(*store); }
  std::string PickAndComplete() {
    Balancer::Pick p = Value(balancer->PickEndpoint(PickRequest{}));
    std::string id = p.endpoint_id();
    p.Complete({.http_status = 200});
    return id;
  }
};

std::vector<std::unique_ptr<Host>> Hosts(int n, int port, bool fleet = true) {
  std::vector<std::unique_ptr<Host>> hosts;
  for (int i = 0; i < n; ++i) hosts.push_back(std::make_unique<Host>(port, fleet));
  for (auto& h : hosts) h->Flush();  // each drew its first turn when created
  return hosts;
}

// `rounds` rounds in which every host picks once, in an order drawn from `seed`, each host's
// draw answered before the next pick: picks per endpoint.
std::map<std::string, int> PickRounds(std::vector<std::unique_ptr<Host>>& hosts, int rounds,
                                      uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<size_t> order(hosts.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::map<std::string, int> picks;
  for (int r = 0; r < rounds; ++r) {
    std::shuffle(order.begin(), order.end(), rng);
    for (size_t i : order) {
      ++picks[hosts[i]->PickAndComplete()];
      hosts[i]->Flush();
    }
  }
  return picks;
}

}  // namespace

TEST_CASE("cluster cursor: hosts that pick once each take the endpoints in turn together") {
  LocalRedis redis;
  // 8 hosts, 4 endpoints: the 8 first picks go 2 to each endpoint. Alone, each host's own cursor
  // starts at the first endpoint, and all 8 go there.
  auto fleet = Hosts(8, redis.port());
  const std::map<std::string, int> once = PickRounds(fleet, 1, 1);
  CHECK(once == std::map<std::string, int>{{"e0", 2}, {"e1", 2}, {"e2", 2}, {"e3", 2}});
  auto alone = Hosts(8, redis.port(), /*fleet=*/false);
  CHECK(PickRounds(alone, 1, 1) == std::map<std::string, int>{{"e0", 8}});
}

TEST_CASE("cluster cursor: over random orders of picks, every endpoint gets the same share") {
  LocalRedis redis;
  for (uint32_t seed = 1; seed <= 4; ++seed) {
    INFO("seed " << seed);
    auto hosts = Hosts(3 + static_cast<int>(seed), redis.port());
    // Every pick takes a turn drawn for it, so the turns taken are consecutive: exact shares.
    const std::map<std::string, int> picks = PickRounds(hosts, 12, seed);
    const int each = 12 * static_cast<int>(hosts.size()) / 4;
    for (const auto& [id, n] : picks) CHECK(n == each);
  }
}

TEST_CASE("cluster cursor: picks before a draw is answered take the local cursor") {
  LocalRedis redis;
  auto hosts = Hosts(2, redis.port());
  // Many picks back to back: at most one turn is drawn ahead, so most take the local cursor.
  // Each balancer's local picks are in turn (1 apart at most), and the picks that took a turn
  // are within hosts + 1: the shares stay within 2 x hosts + 1.
  std::map<std::string, int> picks;
  for (int i = 0; i < 40; ++i) ++picks[hosts[static_cast<size_t>(i % 2)]->PickAndComplete()];
  int lo = 40, hi = 0;
  for (const auto& [id, n] : picks) lo = std::min(lo, n), hi = std::max(hi, n);
  CHECK(picks.size() == 4);
  CHECK(hi - lo <= 5);
}

TEST_CASE("cluster cursor: Redis down, picks go on, and after the restart turns are drawn again") {
  LocalRedis redis;
  auto hosts = Hosts(4, redis.port());
  redis.Kill();
  for (int i = 0; i < 20; ++i) {
    (void)hosts[static_cast<size_t>(i % 4)]->PickAndComplete();  // never fails, never waits
    hosts[static_cast<size_t>(i % 4)]->clock.Advance(absl::Seconds(5));  // past a draw's patience
  }
  REQUIRE(redis.Restart());
  // Reconnected, and every draw sent during the outage answered: such a draw may reach Redis
  // after the restart and take a turn between two other hosts' fresh draws (within the bound,
  // but not exact), so the fresh draws below come after them all.
  for (auto& h : hosts) h->Flush();
  for (auto& h : hosts) {
    (void)h->PickAndComplete();  // draws again
    h->Flush();
  }
  const std::map<std::string, int> picks = PickRounds(hosts, 3, 9);
  for (const auto& [id, n] : picks) CHECK(n == 3);
}

TEST_CASE("cluster cursor: a balancer let go while its draw is under way") {
  LocalRedis redis;
  auto store = sluice_test::TestStore(redis.port(), /*script_clock=*/nullptr);
  for (int i = 0; i < 20; ++i) {
    Balancer::Options o;
    o.strategy = Balancer::Strategy::kRoundRobin;
    o.redis = store;
    o.redis_name = "fleet";
    auto b = Value(Balancer::Create(o));  // draws a turn
    REQUIRE(b->AddEndpoint({.id = "a"}).ok());
    (void)b->PickEndpoint(PickRequest{});  // takes none yet, and leaves the draw under way
  }  // each let go at once; the replies land in cells the balancers no longer read
  sluice_test::Flush(*store);
}
