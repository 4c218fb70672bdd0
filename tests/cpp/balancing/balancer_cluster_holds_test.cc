// Cluster scope for a Balancer's cooldowns and ejections (Options::redis, issues 15 and
// 17): two balancers on two stores stand for two hosts; a redis-server of the test's own holds
// what they share. The balancers' clocks are ManualClocks (one per "host", offset from each other
// to show that hosts need not agree); the scripts run on a third ManualClock standing for the
// Redis server's. Replies are asynchronous, so a test waits (bounded, in real time) for a read
// to be applied; no assertion is about time.
#include <catch2/catch.hpp>

#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <functional>
#include <atomic>
#include <set>
#include <vector>
#include <memory>
#include <string>
#include <thread>

#include "local_redis.h"
#include "sluice/balancer.h"
#include "sluice/redis_store.h"
#include "balancing/balancer_scope_support.h"
#include "test_support.h"

using sluice::AttemptOutcome;
using sluice::Balancer;
using sluice::EndpointStats;
using sluice::Failure;
using sluice::ManualClock;
using sluice::PickRequest;
using sluice_test::Value;

namespace {

constexpr int64_t kSecond = 1'000'000'000;

// One "host": its own clock, store and balancer over endpoints a, b, c.
struct Host {
  ManualClock clock;
  std::shared_ptr<sluice::RedisStore> store;
  std::unique_ptr<Balancer> balancer;

  Host(int port, const sluice::Clock* redis_clock, int64_t clock_offset,
       const std::string& name = "keys", absl::Duration command_timeout = absl::Seconds(2),
       std::string shared_region = "")
      : clock(clock_offset) {
    store = sluice_test::TestStore(port, redis_clock, command_timeout);
    Balancer::Options o;
    o.strategy = Balancer::Strategy::kRoundRobin;
    o.redis = store;
    o.redis_name = name;
    o.redis_refresh = absl::Milliseconds(100);
    o.shared_region = std::move(shared_region);
    balancer = Value(Balancer::Create(o, &clock));
    for (const char* id : {"a", "b", "c"}) REQUIRE(balancer->AddEndpoint({.id = id}).ok());
  }

  EndpointStats Stats(const std::string& id) {
    for (EndpointStats& s : balancer->Endpoints()) {
      if (s.id == id) return s;
    }
    FAIL("no endpoint " << id);
    return {};
  }
  // Seconds until `id` is back (cooldown), 0 if not cooling down.
  double CoolingFor(const std::string& id) {
    const EndpointStats s = Stats(id);
    return s.cooldown_until_nanos == 0 ? 0 : double(s.cooldown_until_nanos - clock.NowNanos()) / kSecond;
  }
  double EjectedFor(const std::string& id) {
    const EndpointStats s = Stats(id);
    return s.ejected_until_nanos == 0 ? 0 : double(s.ejected_until_nanos - clock.NowNanos()) / kSecond;
  }
  // Waits until every command this host sent so far is answered (see sluice_test::Flush).
  void Flush() { sluice_test::Flush(*store); }
  // Lets the mirror go stale, reads Redis's holds and waits until the read is applied. (A read
  // already under way, say one a stats call started, would make the next one wait its turn.)
  void ReadNow() {
    Flush();
    clock.Advance(absl::Milliseconds(101));
    (void)balancer->Endpoints();  // starts the read
    Flush();
  }
};

// Counts the distinct endpoints picks land on among `n` picks.
std::set<std::string> Picked(Balancer& b, int n) {
  std::set<std::string> seen;
  for (int i = 0; i < n; ++i) {
    auto pick = b.PickEndpoint(PickRequest{});
    if (pick.ok()) seen.insert(pick->endpoint_id());
  }
  return seen;
}

}  // namespace

TEST_CASE("a 429 on one host cools the key down on every host, on each host's own clock") {
  LocalRedis redis;
  ManualClock server(1000 * kSecond);
  Host one(redis.port(), &server, 5 * kSecond);
  Host two(redis.port(), &server, 777 * kSecond);  // clocks far apart: Redis's clock decides

  // host one's pick of "a" is rate limited: a 60 s cooldown there at once
  for (;;) {
    Balancer::Pick pick = Value(one.balancer->PickEndpoint(PickRequest{}));
    const bool is_a = pick.endpoint_id() == "a";
    pick.Complete(AttemptOutcome{.http_status = is_a ? 429 : 200});
    if (is_a) break;
  }
  CHECK(one.CoolingFor("a") == Approx(60).margin(0.01));
  one.Flush();
  two.ReadNow();
  // host two's view: the same 60 s (Redis's clock did not move), on its own timeline
  CHECK(two.CoolingFor("a") == Approx(60).margin(0.01));
  CHECK(two.Stats("a").cooldown_reason == Failure::kRateLimited);
  CHECK(Picked(*two.balancer, 20) == std::set<std::string>{"b", "c"});

  // when Redis's clock passes the end, every host picks it again
  server.Advance(absl::Seconds(61));
  two.ReadNow();
  CHECK(two.CoolingFor("a") == 0);
  CHECK(Picked(*two.balancer, 20).count("a") == 1);
}

TEST_CASE("Restore on one host ends the cooldown and the ejection on every host") {
  LocalRedis redis;
  ManualClock server(1000 * kSecond);
  Host one(redis.port(), &server, 0);
  Host two(redis.port(), &server, 0);
  REQUIRE(one.balancer->Cooldown("b", absl::Seconds(600)).ok());
  REQUIRE(one.balancer->Eject("c", absl::Seconds(300)).ok());
  one.Flush();
  two.ReadNow();
  CHECK(two.CoolingFor("b") == Approx(600).margin(0.01));
  CHECK(two.EjectedFor("c") == Approx(300).margin(0.01));
  CHECK(two.Stats("b").cooldown_reason == Failure::kNone);
  CHECK(Picked(*two.balancer, 10) == std::set<std::string>{"a"});

  REQUIRE(two.balancer->Restore("b").ok());
  REQUIRE(two.balancer->Restore("c").ok());
  two.Flush();
  one.ReadNow();
  CHECK(one.CoolingFor("b") == 0);
  CHECK(one.EjectedFor("c") == 0);
  CHECK(Picked(*one.balancer, 30).size() == 3);
}

TEST_CASE("holds only lengthen across hosts: the later end wins") {
  LocalRedis redis;
  ManualClock server(1000 * kSecond);
  Host one(redis.port(), &server, 0);
  Host two(redis.port(), &server, 0);
  REQUIRE(one.balancer->Cooldown("a", absl::Seconds(100)).ok());
  one.Flush();
  two.ReadNow();
  CHECK(two.CoolingFor("a") == Approx(100).margin(0.2));
  REQUIRE(two.balancer->Cooldown("a", absl::Seconds(10)).ok());  // shorter: no change anywhere
  REQUIRE(two.balancer->Cooldown("a", absl::Seconds(500)).ok());
  two.Flush();
  one.ReadNow();
  CHECK(one.CoolingFor("a") == Approx(500).margin(0.5));
  // a shorter one set later (here it is not even sent: this host already holds longer), and
  // a read: the longer end stays
  REQUIRE(one.balancer->Cooldown("a", absl::Seconds(20)).ok());
  one.ReadNow();
  CHECK(one.CoolingFor("a") > 400);
}

TEST_CASE("balancers under another redis_name share nothing") {
  LocalRedis redis;
  ManualClock server(1000 * kSecond);
  Host one(redis.port(), &server, 0, "fleet-one");
  Host two(redis.port(), &server, 0, "fleet-two");
  Host three(redis.port(), &server, 0, "fleet-one");
  REQUIRE(one.balancer->Cooldown("a", absl::Seconds(100)).ok());
  one.Flush();
  three.ReadNow();
  two.ReadNow();
  CHECK(three.CoolingFor("a") > 0);
  CHECK(two.CoolingFor("a") == 0);
}

TEST_CASE("a read that predates a local cooldown never undoes it") {
  // The read is sent, then (Redis stalled) the cooldown; Redis runs them in that order, so the
  // read's reply shows no hold. Applied as the whole truth, it would end the fresh cooldown here
  // until the next read.
  LocalRedis redis;
  ManualClock server(1000 * kSecond);
  Host one(redis.port(), &server, 0);
  one.ReadNow();
  redis.Pause();
  one.clock.Advance(absl::Milliseconds(101));
  (void)one.balancer->Endpoints();                               // the read, stuck
  REQUIRE(one.balancer->Cooldown("a", absl::Seconds(30)).ok());  // the write, behind it
  redis.Resume();
  one.Flush();  // both answered, the read's (stale) reply applied; no read since
  CHECK(one.CoolingFor("a") == Approx(30).margin(0.2));
  CHECK(Picked(*one.balancer, 20).count("a") == 0);
  // the next read has it from Redis
  one.ReadNow();
  CHECK(one.CoolingFor("a") == Approx(30).margin(0.5));
}

TEST_CASE("Redis down: picks go on with each host's own holds, and the holds reach Redis later") {
  LocalRedis redis;
  ManualClock server(1000 * kSecond);
  Host one(redis.port(), &server, 0, "keys", absl::Milliseconds(100));
  Host two(redis.port(), &server, 0, "keys", absl::Milliseconds(100));
  one.ReadNow();
  two.ReadNow();
  redis.Kill();
  REQUIRE(one.balancer->Cooldown("a", absl::Seconds(120)).ok());
  for (int i = 0; i < 20; ++i) {
    one.clock.Advance(absl::Milliseconds(101));
    (void)one.balancer->Endpoints();  // reads that fail
  }
  CHECK(one.CoolingFor("a") > 100);  // its own hold stands, whatever the failed reads said
  CHECK(Picked(*one.balancer, 10) == std::set<std::string>{"b", "c"});
  CHECK(Picked(*two.balancer, 30).size() == 3);  // never an error
  REQUIRE(redis.Start());
  // the cooldown was kept and is delivered after the reconnect
  one.Flush();
  CHECK(one.store->stats().retried >= 1);
  two.ReadNow();
  CHECK(two.CoolingFor("a") > 100);
}

TEST_CASE("with a shared region too, another host's restore clears the host-wide hold") {
  LocalRedis redis;
  ManualClock server(1000 * kSecond);
  sluice_test::RegionName region;
  Host one(redis.port(), &server, 0, "keys", absl::Seconds(2), region.name);
  Host other_host(redis.port(), &server, 0);
  REQUIRE(one.balancer->Cooldown("b", absl::Seconds(300)).ok());
  one.Flush();
  other_host.ReadNow();
  CHECK(other_host.CoolingFor("b") > 0);
  REQUIRE(other_host.balancer->Restore("b").ok());
  other_host.Flush();
  one.ReadNow();
  CHECK(one.CoolingFor("b") == 0);
  // another worker of the host, without Redis, reads the shared region: cleared there too
  Balancer::Options o;
  o.strategy = Balancer::Strategy::kRoundRobin;
  o.shared_region = region.name;
  std::unique_ptr<Balancer> worker = Value(Balancer::Create(o, &one.clock));
  REQUIRE(worker->AddEndpoint({.id = "b"}).ok());
  CHECK(worker->Endpoints()[0].cooldown_until_nanos == 0);
  // and a host-wide hold set by that worker reaches Redis through no one (it has no store),
  // while one's own holds do
  REQUIRE(one.balancer->Cooldown("a", absl::Seconds(50)).ok());
  one.Flush();
  other_host.ReadNow();
  CHECK(other_host.CoolingFor("a") > 0);
}

TEST_CASE("a cooldown set in a fork child reaches the parent through Redis") {
  LocalRedis redis;
  Host parent(redis.port(), nullptr, 0);  // the server's own clock
  parent.ReadNow();
  const pid_t pid = fork();
  if (pid == 0) {
    // the child's store starts a fresh connection; its balancer is the parent's copy
    const bool ok = parent.balancer->Cooldown("c", absl::Seconds(90)).ok() &&
                    parent.store->Check(absl::Seconds(5)).ok();
    _exit(ok ? 0 : 1);
  }
  int status = 0;
  waitpid(pid, &status, 0);
  REQUIRE(WIFEXITED(status));
  REQUIRE(WEXITSTATUS(status) == 0);
  parent.ReadNow();
  CHECK(parent.CoolingFor("c") > 80);
  CHECK(parent.CoolingFor("c") <= 90.01);
}

TEST_CASE("cluster-scope options are checked and name the bad field") {
  LocalRedis redis;
  sluice::RedisOptions r;
  r.port = redis.port();
  auto store = Value(sluice::RedisStore::Create(r));
  Balancer::Options o;
  o.redis = store;
  auto error = [&] { return Balancer::Create(o).status(); };
  o.redis_name = "";
  CHECK(absl::IsInvalidArgument(error()));
  CHECK(std::string(error().message()).find("redis_name") != std::string::npos);
  o.redis_name = "has:colon";
  CHECK(std::string(error().message()).find("redis_name") != std::string::npos);
  o.redis_name = std::string(101, 'x');
  CHECK(absl::IsInvalidArgument(error()));
  o.redis_name = "ok";
  o.redis_refresh = absl::ZeroDuration();
  CHECK(std::string(error().message()).find("redis_refresh") != std::string::npos);
  o.redis_refresh = absl::InfiniteDuration();
  CHECK(std::string(error().message()).find("redis_refresh") != std::string::npos);
  o.redis_refresh = absl::Milliseconds(250);
  CHECK(Balancer::Create(o).ok());
  o.redis = nullptr;
  CHECK(std::string(error().message()).find("redis_name") != std::string::npos);
}

TEST_CASE("picks on several threads while reads of the fleet's holds are applied") {
  // For ThreadSanitizer: the connection thread writes the mirror while picks read it.
  LocalRedis redis;
  Host one(redis.port(), nullptr, 0);
  Host two(redis.port(), nullptr, 0);
  std::atomic<bool> stop{false};
  std::atomic<int64_t> picks{0};
  std::vector<std::thread> pickers;
  for (int t = 0; t < 3; ++t) {
    pickers.emplace_back([&] {
      while (!stop.load()) {
        two.clock.Advance(absl::Milliseconds(2));  // the mirror goes stale every 50 picks
        auto pick = two.balancer->PickEndpoint(PickRequest{});
        if (pick.ok()) {
          picks.fetch_add(1);
          pick->Complete(AttemptOutcome{.http_status = 200});
        }
      }
    });
  }
  for (int i = 0; i < 200; ++i) {
    const char* id = i % 3 == 0 ? "a" : i % 3 == 1 ? "b" : "c";
    if (i % 2 == 0) {
      REQUIRE(one.balancer->Cooldown(id, absl::Seconds(30)).ok());
    } else {
      REQUIRE(one.balancer->Restore(id).ok());
    }
    if (i % 20 == 0) one.Flush();
  }
  one.Flush();
  two.Flush();
  stop = true;
  for (auto& t : pickers) t.join();
  CHECK(picks.load() > 0);
  // Settled: what host two mirrors is what Redis holds after the last writes (the last action
  // on each: Restore(b) at 199, Cooldown(a) at 198, Restore(c) at 197).
  two.ReadNow();
  CHECK(two.CoolingFor("a") > 0);
  CHECK(two.CoolingFor("b") == 0);
  CHECK(two.CoolingFor("c") == 0);
}

TEST_CASE("a balancer, its store and its clock let go while a read is under way") {
  // The read is answered (here: times out) after the balancer, the store and the balancer's
  // clock are gone: its callback must touch none of them (AddressSanitizer sees a read of the
  // destroyed ManualClock otherwise), and the store must still go away.
  LocalRedis redis;
  ManualClock server(1000 * kSecond);
  std::weak_ptr<sluice::RedisStore> store;
  {
    Host one(redis.port(), &server, 0, "keys", absl::Milliseconds(300));
    store = one.store;
    one.ReadNow();
    redis.Pause();
    one.clock.Advance(absl::Milliseconds(101));
    (void)one.balancer->Endpoints();  // the read, stuck
    one.balancer.reset();
    one.store.reset();
  }
  redis.Resume();
  // The store is gone once the read is answered (or timed out), whoever held it last.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (!store.expired() && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  CHECK(store.expired());
  CHECK(redis.Ping());
}

TEST_CASE("a fork child whose parent had a read under way reads again") {
  // The child forgets its parent's queue, so that read is never answered in it: a flag "a read
  // is under way" would have stopped the child's reads for good.
  LocalRedis redis;
  ManualClock server(1000 * kSecond);
  Host one(redis.port(), &server, 0);
  Host two(redis.port(), &server, 0);
  REQUIRE(two.balancer->Cooldown("a", absl::Seconds(300)).ok());
  two.Flush();
  one.ReadNow();
  REQUIRE(one.CoolingFor("a") > 0);
  REQUIRE(one.balancer->Restore("a").ok());  // here only: Redis keeps nothing now either
  one.Flush();
  REQUIRE(two.balancer->Cooldown("b", absl::Seconds(300)).ok());
  two.Flush();
  redis.Pause();
  one.clock.Advance(absl::Milliseconds(101));
  (void)one.balancer->Endpoints();  // the read, stuck at the fork
  const pid_t pid = fork();
  if (pid == 0) {
    one.clock.Advance(absl::Seconds(30));  // past any read's patience
    (void)one.balancer->Endpoints();       // a new read
    const bool ok = one.store->Check(absl::Seconds(5)).ok() && one.CoolingFor("b") > 0;
    _exit(ok ? 0 : 1);
  }
  redis.Resume();
  int status = 0;
  waitpid(pid, &status, 0);
  REQUIRE(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == 0);
}
