// Cluster scope when the deployment goes wrong, against real redis-servers the tests start:
// stalls and restarts must not leak concurrency slots (C); configuration errors must be loud and
// never hidden behind a failure mode (D); Peek and InFlight have pollable twins and Peek says when
// the next unit comes (E).
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#include <catch2/catch.hpp>

#include "cluster_test_support.h"
#include "local_redis.h"
#include "sluice/sluice.hpp"
#include "test_support.h"

using sluice::ConcurrencyLimiter;
using sluice::FailureMode;
using sluice::LeakyBucket;
using sluice::RateLimiter;
using sluice::TokenBudget;
using sluice::Window;
using sluice_test::Store;
using sluice_test::Value;
using sluice_test::Year;

namespace {

// Polls `ready` every 5 ms for up to `limit`: for what only a real server's recovery can bring.
bool Eventually(const std::function<bool()>& ready, std::chrono::milliseconds limit) {
  const auto deadline = std::chrono::steady_clock::now() + limit;
  while (std::chrono::steady_clock::now() < deadline) {
    if (ready()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return ready();
}

sluice::ClusterOptions Cluster(std::shared_ptr<sluice::RedisStore> store, const std::string& rule,
                               FailureMode on_failure = FailureMode::kDeny) {
  sluice::ClusterOptions c;
  c.store = std::move(store);
  c.redis_name = rule;
  c.on_failure = on_failure;
  return c;
}

std::unique_ptr<ConcurrencyLimiter> Cap(std::shared_ptr<sluice::RedisStore> store,
                                        const std::string& rule, int64_t max_in_flight,
                                        FailureMode on_failure = FailureMode::kDeny) {
  ConcurrencyLimiter::Options o;
  o.max_in_flight = max_in_flight;  // the default lease: 10 minutes, far beyond any test
  o.cluster = Cluster(std::move(store), rule, on_failure);
  return Value(ConcurrencyLimiter::Create(o));
}

std::unique_ptr<RateLimiter> Limiter(std::shared_ptr<sluice::RedisStore> store,
                                     const std::string& rule,
                                     FailureMode on_failure = FailureMode::kAllow) {
  RateLimiter::Options o;
  o.windows = {Year(1000)};
  o.cluster = Cluster(std::move(store), rule, on_failure);
  return Value(RateLimiter::Create(o));
}

// A scratch directory for a server's files, removed afterwards.
struct TempDir {
  std::string path;
  TempDir() {
    char name[] = "/tmp/sluice-test-XXXXXX";
    path = mkdtemp(name);
  }
  ~TempDir() { (void)!system(("rm -rf " + path).c_str()); }
};

std::shared_ptr<sluice::RedisStore> StoreAs(int port, const std::string& user,
                                            const std::string& password) {
  sluice::RedisOptions o;
  o.port = port;
  o.username = user;
  o.password = password;
  o.command_timeout = absl::Milliseconds(500);
  o.reconnect_interval = absl::Milliseconds(20);
  return Value(sluice::RedisStore::Create(o));
}

std::string Command(int port, const std::vector<std::string>& argv) {
  redisContext* c = redisConnect("127.0.0.1", port);
  std::vector<const char*> ptrs;
  std::vector<size_t> lens;
  for (const auto& a : argv) ptrs.push_back(a.data()), lens.push_back(a.size());
  auto* r = static_cast<redisReply*>(
      redisCommandArgv(c, static_cast<int>(argv.size()), ptrs.data(), lens.data()));
  std::string out;
  if (r != nullptr && (r->type == REDIS_REPLY_STRING || r->type == REDIS_REPLY_STATUS ||
                       r->type == REDIS_REPLY_ERROR)) {
    out.assign(r->str, r->len);
  } else if (r != nullptr && r->type == REDIS_REPLY_INTEGER) {
    out = std::to_string(r->integer);
  }
  if (r != nullptr) freeReplyObject(r);
  redisFree(c);
  return out;
}

}  // namespace

// ---- C. A stall never costs a slot longer than it lasts. ----

TEST_CASE("faults C: a SIGSTOP stall leaks no slot: late acquires are undone, releases kept") {
  LocalRedis redis;
  auto store = Store(redis.port(), /*reconnect=*/absl::Milliseconds(20),
                     /*command_timeout=*/absl::Milliseconds(100));
  auto cap = Cap(store, "stall", 2);
  ConcurrencyLimiter::Permit held = cap->TryAcquire("app");
  REQUIRE(held);
  redis.Pause();
  // Times out: the failure mode (deny) answers. The command itself sits in Redis's socket and
  // runs when Redis resumes: a slot taken for nobody, unless the store undoes it.
  ConcurrencyLimiter::Permit timed_out = cap->TryAcquire("app");
  CHECK_FALSE(timed_out);
  CHECK(timed_out.status().ok());  // an outage, not a configuration error
  CHECK(cap->failure_mode_decisions() == 1);
  // Released while Redis cannot hear it: kept, and sent once Redis answers again.
  CHECK(held.Release().ok());
  redis.Resume();
  // The lease is 10 minutes: only the undo and the kept release can free these slots now.
  CHECK(Eventually([&] { return cap->InFlight("app") == 0; }, std::chrono::seconds(10)));
  ConcurrencyLimiter::Permit one = cap->TryAcquire("app");
  ConcurrencyLimiter::Permit two = cap->TryAcquire("app");
  CHECK(one);
  CHECK(two);
  CHECK(store->stats().undone >= 1);
  CHECK(store->stats().retried >= 1);
}

TEST_CASE("faults C: a Pending dropped before its reply, or after, gives its slot back") {
  LocalRedis redis;
  auto store = Store(redis.port(), absl::Milliseconds(50), /*command_timeout=*/absl::Seconds(5));
  auto cap = Cap(store, "dropped", 3);
  REQUIRE(cap->InFlight("app") == 0);  // connected: the acquire below is written at once
  redis.Pause();
  { sluice::Pending<ConcurrencyLimiter::Permit> abandoned = cap->Start("app"); }  // before the reply
  std::this_thread::sleep_for(std::chrono::milliseconds(50));  // (only so that it is in Redis)
  redis.Resume();  // the acquire runs and grants a slot nobody holds: the store undoes it
  {
    sluice::Pending<ConcurrencyLimiter::Permit> unread = cap->Start("app");
    REQUIRE(Eventually([&] { return unread.done(); }, std::chrono::seconds(10)));
  }  // granted, never taken
  CHECK(Eventually([&] { return cap->InFlight("app") == 0; }, std::chrono::seconds(10)));
}

TEST_CASE("faults C: SIGKILL and a restart from disk: a release made meanwhile still lands") {
  TempDir dir;
  // Leases survive the restart (appendfsync always), as they would on a persistent Redis.
  LocalRedis redis({"--appendonly", "yes", "--appendfsync", "always", "--dir", dir.path});
  auto store = Store(redis.port(), /*reconnect=*/absl::Milliseconds(20),
                     /*command_timeout=*/absl::Milliseconds(100));
  auto cap = Cap(store, "restart", 2);
  ConcurrencyLimiter::Permit held = cap->TryAcquire("app");
  REQUIRE(held);
  REQUIRE(cap->InFlight("app") == 1);
  redis.Kill();
  CHECK(held.Release().ok());  // Redis is gone: kept
  CHECK_FALSE(cap->TryAcquire("app"));  // the failure mode (deny)
  REQUIRE(redis.Start());  // the lease is back from disk, with 10 minutes to run
  CHECK(Eventually([&] { return cap->InFlight("app") == 0; }, std::chrono::seconds(10)));
  CHECK(cap->TryAcquire("app"));
}

TEST_CASE("faults C: a kept release that Redis refuses (a key pattern revoked) is dropped, once") {
  LocalRedis redis({"--user", "erin", "on", ">pw", "~*", "&*", "+@all"});
  auto store = StoreAs(redis.port(), "erin", "pw");
  auto cap = Cap(store, "revoked", 2);
  ConcurrencyLimiter::Permit p = cap->TryAcquire("app");
  REQUIRE(p);
  REQUIRE(Command(redis.port(), {"ACL", "SETUSER", "erin", "resetkeys", "~other:*"}) == "OK");
  CHECK(p.Release().ok());  // NOPERM: resending it could never succeed (and would spin)
  CHECK(Eventually([&] { return store->stats().dropped == 1; }, std::chrono::seconds(10)));
  const int64_t before = store->stats().commands;
  sluice::Pending<int64_t> in_flight = cap->StartInFlight("app");
  CHECK(in_flight.Get() == -1);
  CHECK(absl::IsPermissionDenied(in_flight.status()));
  CHECK(store->stats().commands == before + 1);  // nothing else is being sent
}

// ---- D. Configuration errors are loud, and never a failure mode. ----

TEST_CASE("faults D: a missing or wrong password is PermissionDenied, even with kAllow") {
  LocalRedis redis({"--requirepass", "s3cret"});
  auto none = Store(redis.port());
  auto open = Limiter(none, "auth", FailureMode::kAllow);
  const absl::StatusOr<sluice::Decision> d = open->TryAcquire("k");
  CHECK(absl::IsPermissionDenied(d.status()));
  CHECK(std::string(d.status().message()).find("NOAUTH") != std::string::npos);
  CHECK_FALSE(open->Allow("k"));  // not admitted: kAllow is for outages only
  CHECK(absl::IsPermissionDenied(open->TryAcquire("k").status()));  // fast, from the breaker
  CHECK(open->failure_mode_decisions() == 0);
  CHECK(none->stats().fast_failures >= 1);
  CHECK(absl::IsPermissionDenied(none->Check()));
  sluice::PendingDecision pending = Value(open->Start("k"));
  CHECK_FALSE(pending.Get().allowed);
  CHECK(absl::IsPermissionDenied(pending.status()));

  auto wrong = StoreAs(redis.port(), "", "not-it");
  CHECK(absl::IsPermissionDenied(Limiter(wrong, "auth")->TryAcquire("k").status()));
  CHECK(wrong->stats().last_error.find("WRONGPASS") != std::string::npos);

  auto right = StoreAs(redis.port(), "", "s3cret");
  CHECK(Value(Limiter(right, "auth")->TryAcquire("k")).allowed);
  CHECK(right->Check().ok());
}

TEST_CASE("faults D: ACL users without EVALSHA, SCRIPT LOAD or the keys get PermissionDenied") {
  LocalRedis redis({"--user", "bob", "on", ">pw", "~*", "&*", "+@all", "-evalsha",  //
                    "--user", "carol", "on", ">pw", "~other:*", "+@all",            //
                    "--user", "dave", "on", ">pw", "~*", "+@all", "-script"});
  for (const char* user : {"bob", "carol", "dave"}) {
    INFO(user);
    auto store = StoreAs(redis.port(), user, "pw");
    CHECK(absl::IsPermissionDenied(store->Check()));
    auto limiter = Limiter(store, "acl", FailureMode::kAllow);
    CHECK(absl::IsPermissionDenied(limiter->TryAcquire("k").status()));
    ConcurrencyLimiter::Permit permit = Cap(store, "acl", 5, FailureMode::kAllow)->TryAcquire("k");
    CHECK_FALSE(permit);
    CHECK(absl::IsPermissionDenied(permit.status()));
    TokenBudget::Options tb;
    tb.windows = {Year(100)};
    tb.cluster = Cluster(store, "acl", FailureMode::kAllow);
    CHECK(absl::IsPermissionDenied(Value(TokenBudget::Create(tb))->TryReserve("k", 1).status()));
    LeakyBucket::Options lb;
    lb.rate = 10;
    lb.cluster = Cluster(store, "acl", FailureMode::kAllow);
    CHECK(absl::IsPermissionDenied(Value(LeakyBucket::Create(lb))->TryAcquire("k").status()));
    CHECK(store->stats().last_error.find("NOPERM") != std::string::npos);
    CHECK(limiter->failure_mode_decisions() == 0);
  }
}

TEST_CASE("faults D: a replica is FailedPrecondition, found at connect and after a failover") {
  LocalRedis master;
  LocalRedis replica({"--replicaof", "127.0.0.1", std::to_string(master.port())});
  auto to_replica = Store(replica.port());
  const absl::Status checked = to_replica->Check();
  CHECK(absl::IsFailedPrecondition(checked));
  CHECK(std::string(checked.message()).find("replica") != std::string::npos);
  CHECK(absl::IsFailedPrecondition(Limiter(to_replica, "ro")->TryAcquire("k").status()));

  // A master demoted under a live connection (a failover): READONLY on the next write.
  LocalRedis other;
  auto to_master = Store(master.port(), /*reconnect=*/absl::Milliseconds(20));
  auto limiter = Limiter(to_master, "ro", FailureMode::kAllow);
  REQUIRE(Value(limiter->TryAcquire("k")).allowed);
  REQUIRE(Command(master.port(), {"REPLICAOF", "127.0.0.1", std::to_string(other.port())}) == "OK");
  // (While it resyncs it may briefly answer LOADING, an outage: the failure mode, then READONLY.)
  absl::Status demoted;
  REQUIRE(Eventually(
      [&] {
        demoted = limiter->TryAcquire("k").status();
        return !demoted.ok() && !absl::IsUnavailable(demoted);
      },
      std::chrono::seconds(10)));
  CHECK(absl::IsFailedPrecondition(demoted));
  CHECK((std::string(demoted.message()).find("READONLY") != std::string::npos ||
         std::string(demoted.message()).find("replica") != std::string::npos));
}

TEST_CASE("faults D: a Sentinel is FailedPrecondition, not an outage") {
  LocalRedis master;
  TempDir dir;
  const std::string config = dir.path + "/sentinel.conf";
  std::ofstream(config) << "sentinel monitor mymaster 127.0.0.1 " << master.port() << " 1\n";
  LocalRedis sentinel({"--sentinel"}, config);
  REQUIRE(sentinel.Ping());
  auto store = Store(sentinel.port());
  const absl::Status checked = store->Check();
  CHECK(absl::IsFailedPrecondition(checked));
  CHECK(std::string(checked.message()).find("Sentinel") != std::string::npos);
  auto limiter = Limiter(store, "sentinel", FailureMode::kAllow);
  CHECK(absl::IsFailedPrecondition(limiter->TryAcquire("k").status()));
  CHECK(limiter->failure_mode_decisions() == 0);
}

TEST_CASE("faults D: a Redis Cluster node as a standalone server is refused loudly, as a cluster it serves every key") {
  TempDir dir;
  // A cluster node's port must be below 55536 (its bus would be port + 10000); the bus gets a
  // free port of its own, which MEET must then name.
  auto node = [&](const char* name, int bus) {
    int port = LocalRedis::FreePort();
    while (port >= 55536) port = LocalRedis::FreePort();
    return std::make_unique<LocalRedis>(
        std::vector<std::string>{"--cluster-enabled", "yes", "--cluster-port", std::to_string(bus),
                                 "--cluster-config-file", dir.path + "/" + name + ".conf", "--dir",
                                 dir.path},
        "", port);
  };
  auto a = node("a", LocalRedis::FreePort());
  const int b_bus = LocalRedis::FreePort();
  auto b = node("b", b_bus);
  REQUIRE(a->Ping());
  REQUIRE(b->Ping());
  REQUIRE(Command(a->port(), {"CLUSTER", "ADDSLOTSRANGE", "0", "8191"}) == "OK");
  REQUIRE(Command(b->port(), {"CLUSTER", "ADDSLOTSRANGE", "8192", "16383"}) == "OK");
  REQUIRE(Command(a->port(), {"CLUSTER", "MEET", "127.0.0.1", std::to_string(b->port()),
                              std::to_string(b_bus)}) == "OK");
  auto ok = [](int port) {
    return Command(port, {"CLUSTER", "INFO"}).find("cluster_state:ok") != std::string::npos;
  };
  const bool formed =
      Eventually([&] { return ok(a->port()) && ok(b->port()); }, std::chrono::seconds(60));
  INFO("a: " << Command(a->port(), {"CLUSTER", "INFO"}).substr(0, 200));
  INFO("b: " << Command(b->port(), {"CLUSTER", "INFO"}).substr(0, 200));
  REQUIRE(formed);
  // Given as a standalone server, a Cluster node is refused at connect, loudly, for every key.
  auto store = Store(a->port());
  auto limiter = Limiter(store, "slots", FailureMode::kAllow);
  for (int i = 0; i < 10; ++i) {
    const absl::StatusOr<sluice::Decision> d = limiter->TryAcquire("tenant-" + std::to_string(i));
    REQUIRE_FALSE(d.ok());
    CHECK(absl::IsFailedPrecondition(d.status()));
    CHECK(std::string(d.status().message()).find("cluster_nodes") != std::string::npos);
  }
  CHECK(limiter->failure_mode_decisions() == 0);
  // Given as a cluster (one seed is enough), every key is served by its slot's master.
  sluice::RedisOptions o;
  o.cluster_nodes = {{"127.0.0.1", a->port()}};
  o.command_timeout = absl::Seconds(1);
  auto cluster_store = sluice::RedisStore::Create(o).value();
  auto cluster_limiter = Limiter(cluster_store, "slots", FailureMode::kDeny);
  int served = 0;
  for (int i = 0; i < 40; ++i) {  // keys hash to both halves; the digests are deterministic
    const absl::StatusOr<sluice::Decision> d =
        cluster_limiter->TryAcquire("tenant-" + std::to_string(i));
    REQUIRE(d.ok());
    served += d->allowed ? 1 : 0;
  }
  CHECK(served == 40);
  CHECK(cluster_limiter->failure_mode_decisions() == 0);
  CHECK(cluster_store->stats().config_errors == 0);
}

// ---- E. Peek says when; Peek and InFlight have pollable twins. ----

namespace {

// A limiter of 10 per second (burst 10) on `clock`, in the given scope.
std::unique_ptr<RateLimiter> TenPerSecond(const sluice::Clock* clock, const std::string& region,
                                          std::shared_ptr<sluice::RedisStore> store) {
  RateLimiter::Options o;
  o.windows = {Window::PerSecond(10, 10)};
  o.shared_region = region;
  if (store != nullptr) o.cluster = Cluster(std::move(store), "peek-" + std::to_string(getpid()));
  return Value(RateLimiter::Create(o, clock));
}

void CheckPeekOfExhaustedKey(RateLimiter& limiter, sluice::ManualClock& clock) {
  for (int i = 0; i < 10; ++i) REQUIRE(Value(limiter.TryAcquire("k")).allowed);
  sluice::PendingDecision pending = limiter.StartPeek("k");
  sluice::Decision peek = pending.Get();
  CHECK(pending.status().ok());
  CHECK_FALSE(peek.allowed);  // a request of 1 would be refused
  CHECK(peek.remaining == 0);
  CHECK(peek.retry_after_nanos == 100'000'000);  // the next unit comes in 1/10 s
  clock.Advance(absl::Milliseconds(99));
  CHECK(limiter.Peek("k").retry_after_nanos == 1'000'000);
  CHECK_FALSE(Value(limiter.TryAcquire("k")).allowed);  // Peek agrees with TryAcquire
  clock.Advance(absl::Milliseconds(1));
  peek = limiter.Peek("k");
  CHECK(peek.allowed);
  CHECK(peek.retry_after_nanos == 0);
  CHECK(peek.remaining == 1);
  CHECK(Value(limiter.TryAcquire("k")).allowed);
}

}  // namespace

TEST_CASE("faults E: Peek of an exhausted key says refused and when, in every scope") {
  SECTION("process") {
    sluice::ManualClock clock(0);
    CheckPeekOfExhaustedKey(*TenPerSecond(&clock, "", nullptr), clock);
  }
  SECTION("host") {
    // Host scope reads the steady clock of the host, so it is checked with whole windows only.
    sluice_test::RegionName region;
    auto limiter = TenPerSecond(sluice::Clock::Steady(), region.name, nullptr);
    for (int i = 0; i < 10; ++i) REQUIRE(Value(limiter->TryAcquire("k")).allowed);
    const sluice::Decision peek = limiter->Peek("k");
    CHECK_FALSE(peek.allowed);
    CHECK(peek.remaining == 0);
    CHECK(peek.retry_after_nanos > 0);
    CHECK(peek.retry_after_nanos <= 100'000'000);
  }
  SECTION("cluster") {
    LocalRedis redis;
    sluice::ManualClock clock(int64_t{50} * 86'400'000'000'000);  // 50 days after 2025-01-01
    sluice::RedisOptions ro;
    ro.port = redis.port();
    ro.command_timeout = absl::Seconds(1);
    ro.script_clock_for_testing = &clock;
    auto store = Value(sluice::RedisStore::Create(ro));
    auto limiter = TenPerSecond(&clock, "", store);
    CheckPeekOfExhaustedKey(*limiter, clock);
    sluice::PendingDecision pending = limiter->StartPeek("never-seen");
    CHECK(pending.fd() >= 0);  // a loop can wait for it
    CHECK(pending.Get().allowed);
  }
}

TEST_CASE("faults E: TokenBudget::Peek says refused and when, in debt too") {
  LocalRedis redis;
  sluice::ManualClock clock(int64_t{50} * 86'400'000'000'000);
  sluice::RedisOptions ro;
  ro.port = redis.port();
  ro.command_timeout = absl::Seconds(1);
  ro.script_clock_for_testing = &clock;
  auto store = Value(sluice::RedisStore::Create(ro));
  for (const bool cluster : {false, true}) {
    INFO((cluster ? "cluster" : "process"));
    TokenBudget::Options o;
    o.windows = {Window::PerSecond(1000, 1000)};
    if (cluster) o.cluster = Cluster(store, "tokens-peek");
    auto budget = Value(TokenBudget::Create(o, &clock));
    REQUIRE(Value(budget->TryReserve("t", 1000)).Settle(1500).ok());  // 500 in debt
    sluice::PendingDecision pending = budget->StartPeek("t");
    const sluice::Decision peek = pending.Get();
    CHECK_FALSE(peek.allowed);
    CHECK(peek.remaining == -500);
    CHECK(peek.retry_after_nanos == 501'000'000);  // the debt, then one token
    clock.Advance(absl::Milliseconds(501));
    CHECK(budget->Peek("t").allowed);
  }
}

TEST_CASE("faults E: InFlight has a pollable twin") {
  LocalRedis redis;
  auto cap = Cap(Store(redis.port()), "in-flight", 3);
  ConcurrencyLimiter::Permit p = cap->TryAcquire("app");
  REQUIRE(p);
  sluice::Pending<int64_t> pending = cap->StartInFlight("app");
  CHECK(pending.fd() >= 0);
  CHECK(pending.Get() == 1);
  CHECK(pending.status().ok());
  ConcurrencyLimiter::Options local;
  local.max_in_flight = 2;
  auto process = Value(ConcurrencyLimiter::Create(local));
  ConcurrencyLimiter::Permit q = process->TryAcquire("app");
  sluice::Pending<int64_t> ready = process->StartInFlight("app");
  CHECK(ready.done());
  CHECK(ready.Get() == 1);
}
