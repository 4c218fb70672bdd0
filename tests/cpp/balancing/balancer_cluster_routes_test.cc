// Cluster scope for the prefix strategies (Options::redis, issue 15): the routes every host's
// balancers share through a Redis stream (lib/balancing/cluster_routes.h). Two balancers on two
// stores stand for two hosts; a redis-server of the test's own holds the stream. Reads are
// asynchronous, so a test waits (bounded, in real time) for one to be answered; no assertion is
// about time.
#include <catch2/catch.hpp>

#include <hiredis/hiredis.h>

#include <chrono>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "local_redis.h"
#include "sluice/balancer.h"
#include "sluice/redis_store.h"
#include "balancing/balancer_scope_support.h"
#include "test_support.h"

using sluice::Balancer;
using sluice::ManualClock;
using sluice::PickRequest;
using sluice_test::kBlocksPerTurn;
using sluice_test::PickAndComplete;
using sluice_test::Routed;
using sluice_test::Turn;
using sluice_test::Value;

namespace {

// One "host": its own clock, store and prefix-affinity balancer over e0..e3.
struct Host {
  ManualClock clock;
  std::shared_ptr<sluice::RedisStore> store;
  std::unique_ptr<Balancer> balancer;

  Host(int port, const std::string& name = "fleet") {
    store = sluice_test::TestStore(port, /*script_clock=*/nullptr);
    Balancer::Options o;
    o.strategy = Balancer::Strategy::kPrefixAffinity;
    o.redis = store;
    o.redis_name = name;
    o.redis_refresh = absl::Milliseconds(100);
    balancer = Value(Balancer::Create(o, &clock));
    for (int i = 0; i < 4; ++i) REQUIRE(balancer->AddEndpoint({.id = "e" + std::to_string(i)}).ok());
  }

  // Waits until every command this host sent so far is answered: the store answers in order,
  // so its own check is a barrier. Bounded; retried while the store reconnects.
  void Flush() { sluice_test::Flush(*store); }
  // Reads the fleet's routes now: the last read goes stale, a pick starts the next, and it is
  // answered before this returns.
  void ReadNow() {
    Flush();
    clock.Advance(absl::Milliseconds(101));
    (void)balancer->PickEndpoint(PickRequest{});
    Flush();
  }
};


// Routes new conversations from..from+n-1's first turns on `first`, then their next turns on
// `second` (after it has read the fleet's routes): how many moved or lost their match.
int MovedAcross(Host& first, Host& second, uint64_t n, uint64_t from = 1) {
  std::map<uint64_t, std::string> where;
  for (uint64_t c = from; c < from + n; ++c) {
    where[c] = PickAndComplete(*first.balancer, Turn(c, 0)).endpoint;
  }
  first.Flush();
  second.ReadNow();
  int moved = 0;
  for (uint64_t c = from; c < from + n; ++c) {
    const Routed r = PickAndComplete(*second.balancer, Turn(c, 1));
    moved += r.endpoint != where[c] || r.matched != kBlocksPerTurn;
  }
  return moved;
}

}  // namespace

TEST_CASE("cluster routes: a conversation's next turn on another host goes where its last turn went") {
  LocalRedis redis;
  Host one(redis.port()), two(redis.port());
  CHECK(MovedAcross(one, two, 12) == 0);
  CHECK(MovedAcross(two, one, 12, 100) == 0);  // both ways

  // Under another name nothing is shared: the same schedule moves turns.
  Host three(redis.port(), "another-fleet");
  CHECK(MovedAcross(one, three, 12, 200) > 0);
}

TEST_CASE("cluster routes: a host started later reads the fleet's newest routes") {
  LocalRedis redis;
  Host one(redis.port());
  std::map<uint64_t, std::string> where;
  for (uint64_t c = 1; c <= 20; ++c) where[c] = PickAndComplete(*one.balancer, Turn(c, 0)).endpoint;
  one.Flush();
  Host later(redis.port());  // its creation starts the first read
  later.Flush();
  for (uint64_t c = 1; c <= 20; ++c) {
    CAPTURE(c);
    const Routed r = PickAndComplete(*later.balancer, Turn(c, 1));
    CHECK(r.endpoint == where[c]);
    CHECK(r.matched == kBlocksPerTurn);
  }
}

TEST_CASE("cluster routes: Redis down, picks go on and after the restart new routes are shared") {
  LocalRedis redis;
  Host one(redis.port()), two(redis.port());
  one.Flush();
  two.Flush();
  redis.Kill();
  for (uint64_t c = 1; c <= 10; ++c) {
    PickAndComplete(*one.balancer, Turn(c, 0));
    one.clock.Advance(absl::Milliseconds(200));  // reads fail too: they must not stop picks
  }
  REQUIRE(redis.Restart());
  one.Flush();  // reconnected (routes sent while the store is still down are dropped)
  two.Flush();
  CHECK(MovedAcross(one, two, 8, 100) == 0);
}

TEST_CASE("cluster routes: entries sluice did not write are skipped") {
  LocalRedis redis;
  Host one(redis.port()), two(redis.port());
  redisContext* c = redisConnect("127.0.0.1", redis.port());
  REQUIRE(c != nullptr);
  REQUIRE(c->err == 0);
  const std::string key = "sluice:{lb:fleet}:routes";
  const std::vector<std::string> junk = {"", "short", std::string(31, 'x'), std::string(24 + 8 * 2000, 'y')};
  for (const std::string& j : junk) {
    auto* r = static_cast<redisReply*>(
        redisCommand(c, "XADD %b * r %b", key.data(), key.size(), j.data(), j.size()));
    REQUIRE(r != nullptr);
    freeReplyObject(r);
  }
  auto* r = static_cast<redisReply*>(redisCommand(c, "XADD %b * a b c d", key.data(), key.size()));
  REQUIRE(r != nullptr);
  freeReplyObject(r);
  redisFree(c);
  CHECK(MovedAcross(one, two, 6) == 0);  // the routes after the junk still arrive
}

TEST_CASE("cluster routes: a balancer and its store let go while a read is under way") {
  LocalRedis redis;
  for (int i = 0; i < 20; ++i) {
    auto host = std::make_unique<Host>(redis.port());  // its creation starts a read
    PickAndComplete(*host->balancer, Turn(1, 0));
    if (i % 2 == 0) host->Flush();  // its route is in Redis
    host->clock.Advance(absl::Milliseconds(101));
    PickAndComplete(*host->balancer, {});  // starts another read
    host.reset();  // the read's reply finds nobody
  }
  Host last(redis.port());
  last.Flush();
  CHECK(PickAndComplete(*last.balancer, Turn(1, 1)).matched == kBlocksPerTurn);
}
