// Cluster scope (strict mode) against a real redis-server the test starts on a free port.
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <thread>
#include <vector>

#include <catch2/catch.hpp>

#include "cluster_test_support.h"
#include "local_redis.h"
#include "sluice/sluice.hpp"
#include "test_support.h"

using sluice::FailureMode;
using sluice::RateLimiter;
using sluice::Window;
using sluice_test::ErrorOf;
using sluice_test::ForkAndSum;
using sluice_test::Store;
using sluice_test::Value;
using sluice_test::Year;

namespace {

std::unique_ptr<RateLimiter> Limiter(std::shared_ptr<sluice::RedisStore> store,
                                     std::vector<Window> windows, const std::string& rule,
                                     FailureMode mode = FailureMode::kLocal, int64_t share = 1) {
  RateLimiter::Options o;
  o.windows = std::move(windows);
  o.cluster.store = std::move(store);
  o.cluster.redis_name = rule;
  o.cluster.on_failure = mode;
  o.cluster.local_share = share;
  return Value(RateLimiter::Create(o));
}

int CountAllowed(RateLimiter& limiter, const char* key, int attempts) {
  int allowed = 0;
  for (int i = 0; i < attempts; ++i) allowed += limiter.Allow(key) ? 1 : 0;
  return allowed;
}

}  // namespace

TEST_CASE("strict mode: threads share one limit exactly, one round trip each") {
  LocalRedis redis;
  auto store = Store(redis.port());
  auto limiter = Limiter(store, {Year(400)}, "exact");
  std::atomic<int> admitted{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < 100; ++i) admitted += limiter->Allow("tenant-1") ? 1 : 0;
    });
  }
  for (auto& t : threads) t.join();
  CHECK(admitted == 400);
  CHECK(store->stats().commands == 400);  // exactly one command per decision
  CHECK(store->stats().script_loads == 1);
  CHECK_FALSE(limiter->Allow("tenant-1"));
  CHECK(limiter->failure_mode_decisions() == 0);
}

// Named "fork": ThreadSanitizer cannot run threads in the child of a threaded fork, so the tsan
// preset leaves this one out (the dev and asan runs include it).
TEST_CASE("strict mode after fork: children get fresh connections, and the parent keeps working") {
  LocalRedis redis;
  auto store = Store(redis.port());
  auto limiter = Limiter(store, {Year(500)}, "exact-fork");
  REQUIRE(CountAllowed(*limiter, "tenant-1", 400) == 400);  // its connection thread is running
  // Each child's inherited limiter gets a fresh thread and connection on first use.
  const int children = ForkAndSum(3, [&] { return CountAllowed(*limiter, "tenant-1", 100); });
  CHECK(children == 100);  // 300 attempts, 100 left of 500
  CHECK_FALSE(limiter->Allow("tenant-1"));  // the parent kept working after fork
  CHECK(limiter->failure_mode_decisions() == 0);
}

TEST_CASE("strict mode: several windows, all or nothing, with the binding window reported") {
  LocalRedis redis;
  auto store = Store(redis.port());
  auto both = Limiter(store, {Year(10), Year(6)}, "multi");
  for (int i = 0; i < 6; ++i) REQUIRE(both->Allow("k"));
  const sluice::Decision refused = Value(both->TryAcquire("k"));
  CHECK_FALSE(refused.allowed);
  CHECK(refused.limit == 6);
  CHECK(refused.retry_after_nanos > 0);
  // The first window saw only the 6 admissions: refusals charged nothing.
  auto first_only = Limiter(store, {Year(10)}, "multi");
  CHECK(first_only->Peek("k").remaining == 4);
  CHECK(Value(first_only->TryAcquire("k", 4)).allowed);
}

TEST_CASE("strict mode: retry_after comes from the server clock and is honoured") {
  LocalRedis redis;
  auto store = Store(redis.port());
  auto limiter = Limiter(store, {Window::PerSecond(20, 1)}, "timed");
  REQUIRE(limiter->Allow("k"));
  const sluice::Decision d = Value(limiter->TryAcquire("k"));
  CHECK_FALSE(d.allowed);
  CHECK(d.retry_after_nanos > 0);
  CHECK(d.retry_after_nanos <= 50'000'000);
  std::this_thread::sleep_for(std::chrono::nanoseconds(d.retry_after_nanos + 1'000'000));
  CHECK(limiter->Allow("k"));
}

TEST_CASE("Redis killed mid-load: each failure mode applies, fast, and nothing crashes") {
  LocalRedis redis;
  auto store = Store(redis.port(), /*reconnect=*/absl::Seconds(30));  // stays open for the test
  auto allow = Limiter(store, {Year(1)}, "fail-allow", FailureMode::kAllow);
  auto deny = Limiter(store, {Year(100)}, "fail-deny", FailureMode::kDeny);
  auto local = Limiter(store, {Year(100)}, "fail-local", FailureMode::kLocal, /*share=*/4);
  REQUIRE(allow->Allow("k"));
  REQUIRE_FALSE(allow->Allow("k"));
  REQUIRE(deny->Allow("k"));
  redis.Kill();
  CHECK(allow->Allow("k"));   // fail open
  CHECK_FALSE(deny->Allow("k"));  // fail closed
  int local_admitted = 0;
  for (int i = 0; i < 100; ++i) local_admitted += local->Allow("k") ? 1 : 0;
  CHECK(local_admitted == 25);  // this process's share: 100 / 4
  const sluice::RedisStats stats = store->stats();
  CHECK_FALSE(stats.connected);
  CHECK(stats.failures >= 1);
  CHECK(stats.fast_failures >= 100);  // the breaker spared them the timeout
  CHECK(local->failure_mode_decisions() == 100);
}

TEST_CASE("Redis restarted: the store reconnects by itself and strict decisions resume") {
  LocalRedis redis;
  auto store = Store(redis.port());
  auto limiter = Limiter(store, {Year(1000)}, "recover", FailureMode::kDeny);
  REQUIRE(limiter->Allow("k"));
  redis.Kill();
  CHECK_FALSE(limiter->Allow("k"));
  REQUIRE(redis.Start());  // a fresh, empty Redis on the same port
  const auto restarted = std::chrono::steady_clock::now();
  bool recovered = false;
  while (!recovered && std::chrono::steady_clock::now() - restarted < std::chrono::seconds(10)) {
    recovered = limiter->Allow("k");
    if (!recovered) std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  CHECK(recovered);
  CHECK(store->stats().connects >= 2);
  CHECK(store->stats().script_loads >= 2);  // the new server had no scripts
  INFO("recovered after "
       << std::chrono::duration<double>(std::chrono::steady_clock::now() - restarted).count()
       << " s");
}

TEST_CASE("Redis paused (SIGSTOP): decisions time out into the failure mode, then resume") {
  LocalRedis redis;
  auto store = Store(redis.port());
  auto limiter = Limiter(store, {Year(1000)}, "paused", FailureMode::kAllow);
  REQUIRE(limiter->Allow("k"));
  redis.Pause();
  CHECK(limiter->Allow("k"));  // after command_timeout, the failure mode: allow
  CHECK(limiter->failure_mode_decisions() >= 1);
  redis.Resume();
  bool strict_again = false;
  for (int i = 0; i < 2000 && !strict_again; ++i) {
    const int64_t before = limiter->failure_mode_decisions();
    (void)limiter->Allow("k");
    strict_again = limiter->failure_mode_decisions() == before;
    if (!strict_again) std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  CHECK(strict_again);
}

TEST_CASE("Start() hands back a pending decision with a pollable fd") {
  LocalRedis redis;
  auto store = Store(redis.port());
  auto limiter = Limiter(store, {Year(2)}, "async");
  std::vector<sluice::PendingDecision> pending;
  for (int i = 0; i < 3; ++i) pending.push_back(Value(limiter->Start("k")));
  int admitted = 0;
  for (auto& p : pending) {
    CHECK(p.fd() >= 0);
    admitted += p.Get().allowed ? 1 : 0;
    CHECK(p.done());
  }
  CHECK(admitted == 2);
}

TEST_CASE("connection settings: unix socket, ACL user and password, db") {
  const std::string socket_path = "/tmp/sluice-test-" + std::to_string(getpid()) + ".sock";
  LocalRedis redis({"--unixsocket", socket_path, "--unixsocketperm", "700", "--user", "alice",
                    "on", ">s3cret", "~*", "&*", "+@all"});
  sluice::RedisOptions o;
  o.unix_socket = socket_path;
  o.username = "alice";
  o.password = "s3cret";
  o.db = 3;
  o.command_timeout = absl::Milliseconds(200);
  auto store = Value(sluice::RedisStore::Create(o));
  auto limiter = Limiter(store, {Year(2)}, "acl", FailureMode::kDeny);
  CHECK(limiter->Allow("k"));
  CHECK(limiter->Allow("k"));
  CHECK_FALSE(limiter->Allow("k"));
  CHECK(limiter->failure_mode_decisions() == 0);
  // The state is in db 3, reached through the socket as alice.
  redisContext* c = redisConnectUnix(socket_path.c_str());
  REQUIRE(c != nullptr);
  REQUIRE(c->err == 0);
  auto* auth = static_cast<redisReply*>(redisCommand(c, "AUTH alice s3cret"));
  freeReplyObject(auth);
  auto* in_db0 = static_cast<redisReply*>(redisCommand(c, "DBSIZE"));
  CHECK(in_db0->integer == 0);
  freeReplyObject(in_db0);
  freeReplyObject(redisCommand(c, "SELECT 3"));
  auto* in_db3 = static_cast<redisReply*>(redisCommand(c, "DBSIZE"));
  CHECK(in_db3->integer == 1);  // one key, one window
  freeReplyObject(in_db3);
  redisFree(c);
  // A wrong password is a configuration error, not an outage: the caller gets it (no failure
  // mode decides), and the stats say why.
  o.password = "wrong";
  auto refused_store = Value(sluice::RedisStore::Create(o));
  auto refused = Limiter(refused_store, {Year(2)}, "acl", FailureMode::kAllow);
  CHECK(absl::IsPermissionDenied(refused->TryAcquire("other").status()));
  CHECK_FALSE(refused->Allow("other"));
  CHECK(refused->failure_mode_decisions() == 0);
  CHECK_FALSE(refused_store->stats().connected);
  CHECK(refused_store->stats().config_errors >= 2);
  unlink(socket_path.c_str());
}

TEST_CASE("cluster options are validated, naming the field") {
  LocalRedis redis;
  auto store = Store(redis.port());
  RateLimiter::Options o;
  o.windows = {Window::PerSecond(10)};
  o.cluster.store = store;
  CHECK(ErrorOf(RateLimiter::Create(o)).find("cluster.redis_name must be 1 to 100 characters") !=
        std::string::npos);
  o.cluster.redis_name = "r";
  // kLocal (the default) needs local_share: no default is safe for every deployment.
  CHECK(o.cluster.on_failure == FailureMode::kLocal);
  CHECK(ErrorOf(RateLimiter::Create(o)).find("cluster.local_share must be set (>= 1") !=
        std::string::npos);
  o.cluster.local_share = -1;
  o.cluster.on_failure = FailureMode::kDeny;
  CHECK(ErrorOf(RateLimiter::Create(o)).find("cluster.local_share must be >= 0, got -1") !=
        std::string::npos);
  o.cluster.local_share = 0;
  CHECK(RateLimiter::Create(o).ok());  // not needed with kAllow or kDeny
  o.cluster.local_share = 1;
  o.shared_region = "x";
  CHECK(ErrorOf(RateLimiter::Create(o)).find("two scopes") != std::string::npos);
  o.shared_region.clear();
  o.windows = {{10, absl::Nanoseconds(1500), 0}};
  CHECK(ErrorOf(RateLimiter::Create(o)).find("whole number of microseconds") != std::string::npos);
  sluice::RedisOptions r;
  r.port = 0;
  CHECK(ErrorOf(sluice::RedisStore::Create(r)) == "sluice.RedisStore: port must be 1..65535, got 0");
  r.port = 6379;
  r.command_timeout = absl::ZeroDuration();
  CHECK(ErrorOf(sluice::RedisStore::Create(r)).find("command_timeout must be > 0") !=
        std::string::npos);
  r.command_timeout = absl::Milliseconds(5);
  r.key_prefix = "a{b";
  CHECK(ErrorOf(sluice::RedisStore::Create(r)).find("key_prefix") != std::string::npos);
  r.key_prefix = "sluice";
  r.username = "u";
  CHECK(ErrorOf(sluice::RedisStore::Create(r)).find("username needs a password") !=
        std::string::npos);
}

namespace {

std::unique_ptr<RateLimiter> Leased(std::shared_ptr<sluice::RedisStore> store, Window window,
                                    const std::string& rule, int64_t lease_units,
                                    FailureMode mode = FailureMode::kDeny) {
  RateLimiter::Options o;
  o.windows = {window};
  o.cluster.store = std::move(store);
  o.cluster.redis_name = rule;
  o.cluster.mode = sluice::ClusterMode::kLeased;
  o.cluster.lease_units = lease_units;
  o.cluster.on_failure = mode;
  return Value(RateLimiter::Create(o));
}

}  // namespace

TEST_CASE("leased mode: threads decide locally and never exceed the limit") {
  LocalRedis redis;
  auto store = Store(redis.port());
  auto limiter = Leased(store, Year(1000), "leased", /*lease_units=*/50);
  std::atomic<int> admitted{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < 400; ++i) admitted += limiter->Allow("tenant-1") ? 1 : 0;
    });
  }
  for (auto& t : threads) t.join();
  CHECK(admitted <= 1000);        // leases are charged in Redis before they are used
  CHECK(admitted >= 1000 - 50);   // at most one lease's units are still held here
  CHECK(limiter->leased_local_decisions() >= admitted - limiter->lease_round_trips());
  // About one round trip per lease; once Redis says the key is spent, refusals are local.
  CHECK(limiter->lease_round_trips() <= 1000 / 50 + 10);
  CHECK(store->stats().commands == limiter->lease_round_trips());
}

TEST_CASE("AllowWithoutWaiting: decided from the lease, else nullopt (strict mode: always)") {
  LocalRedis redis;
  auto store = Store(redis.port());
  auto leased = Leased(store, Year(10), "no-wait", /*lease_units=*/5);
  auto strict = Limiter(store, {Year(10)}, "no-wait-strict");
  CHECK_FALSE(strict->AllowWithoutWaiting("k").has_value());
  CHECK_FALSE(leased->AllowWithoutWaiting("k").has_value());  // no lease yet
  REQUIRE(leased->Allow("k"));  // takes a lease of 5, spends 1
  for (int i = 0; i < 4; ++i) CHECK(leased->AllowWithoutWaiting("k") == std::optional<bool>(true));
  CHECK_FALSE(leased->AllowWithoutWaiting("k").has_value());  // spent: a round trip is due
  CHECK(leased->AllowWithoutWaiting("k", 0) == std::optional<bool>(false));  // a bad cost
  CHECK(leased->lease_round_trips() == 1);
}

TEST_CASE("leased mode after fork: processes share the limit, never over it") {
  LocalRedis redis;
  auto store = Store(redis.port());
  auto limiter = Leased(store, Year(600), "leased-fork", /*lease_units=*/20);
  REQUIRE(limiter->Allow("k"));  // the parent holds a lease when it forks
  const int children = ForkAndSum(3, [&] { return CountAllowed(*limiter, "k", 400); });
  const int total = 1 + CountAllowed(*limiter, "k", 400) + children;
  // A child does not inherit its parent's lease (each copy would be spent again): never over.
  CHECK(total <= 600);
  CHECK(total >= 600 - 4 * 20);  // at most one unspent lease per process
}

TEST_CASE("leased mode on a refilling window stays within burst + (t + ttl) * rate") {
  LocalRedis redis;
  auto store = Store(redis.port());
  RateLimiter::Options o;
  o.windows = {Window::PerSecond(2000, 100)};
  o.cluster.store = store;
  o.cluster.redis_name = "leased-refill";
  o.cluster.mode = sluice::ClusterMode::kLeased;
  o.cluster.lease_units = 20;
  o.cluster.lease_ttl = absl::Milliseconds(10);
  o.cluster.on_failure = FailureMode::kDeny;
  auto limiter = Value(RateLimiter::Create(o));
  const auto start = std::chrono::steady_clock::now();
  std::atomic<int64_t> admitted{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 2; ++t) {
    threads.emplace_back([&] {
      while (std::chrono::steady_clock::now() - start < std::chrono::milliseconds(300)) {
        admitted += limiter->Allow("hot") ? 1 : 0;
      }
    });
  }
  for (auto& t : threads) t.join();
  const double elapsed =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  const int64_t bound = 100 + static_cast<int64_t>((elapsed + 0.010) * 2000);
  INFO("admitted " << admitted << " in " << elapsed << " s; bound " << bound);
  CHECK(admitted <= bound);
  CHECK(admitted > 0);
}

TEST_CASE("leased mode with Redis gone: spends its lease, then the failure mode") {
  LocalRedis redis;
  auto store = Store(redis.port(), /*reconnect=*/absl::Seconds(30));
  auto limiter = Leased(store, Year(1000), "leased-down", /*lease_units=*/10);
  REQUIRE(limiter->Allow("k"));  // leases 10, spends 1
  redis.Kill();
  int local = 0;
  local = CountAllowed(*limiter, "k", 9);
  CHECK(local == 9);                     // the lease still holds 9 units: no Redis needed
  CHECK_FALSE(limiter->Allow("k"));      // then the failure mode: deny
  CHECK(limiter->failure_mode_decisions() >= 1);
}
