// Cluster scope on the Redis that production runs: a Redis Cluster (3 masters, failover,
// resharding), a Sentinel group (failover), TLS. Real servers on loopback ports, started here
// (tests/cpp/redis_topologies.h, tls_test_support.h) and stopped after.
//
// What every topology must keep: exact decisions, across processes; during a failover or a
// resharding at most the failure mode for the time it takes, never a crash, a hang, a leaked
// permit or an uncounted decision; configuration errors loud.
//
// Cases named "fork" fork() a threaded process, which ThreadSanitizer cannot follow: the tsan
// preset leaves them out (as it does cluster_fork_stress_test).
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#include <catch2/catch.hpp>

#include "cluster_test_support.h"
#include "local_redis.h"
#include "redis_topologies.h"
#include "sluice/internal/key_digest.h"
#include "sluice/sluice.hpp"
#include "stores/redis_keys.h"
#include "stores/redis_slots.h"
#include "test_support.h"
#include "tls_test_support.h"

using redis_topologies::LocalRedisCluster;
using redis_topologies::LocalSentinelGroup;
using sluice::ConcurrencyLimiter;
using sluice::FailureMode;
using sluice::RateLimiter;
using sluice_test::ForkAndSum;
using sluice_test::Value;
using sluice_test::Year;

namespace {

using Clock = std::chrono::steady_clock;

bool Eventually(const std::function<bool()>& ready, std::chrono::milliseconds limit) {
  const auto deadline = Clock::now() + limit;
  while (Clock::now() < deadline) {
    if (ready()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return ready();
}

std::vector<sluice::RedisNode> NodesOf(const std::vector<redis_topologies::Node>& nodes) {
  std::vector<sluice::RedisNode> out;
  for (const auto& n : nodes) out.push_back({n.host, n.port});
  return out;
}

// Generous timeouts: a failover makes replies late, sanitizers make everything slow.
sluice::RedisOptions Generous() {
  sluice::RedisOptions o;
  o.command_timeout = absl::Milliseconds(500);
  o.connect_timeout = absl::Milliseconds(500);
  o.reconnect_interval = absl::Milliseconds(50);
  return o;
}

std::shared_ptr<sluice::RedisStore> ClusterStore(const LocalRedisCluster& cluster,
                                                 bool one_seed = false) {
  sluice::RedisOptions o = Generous();
  o.cluster_nodes = NodesOf(cluster.Seeds());
  if (one_seed) o.cluster_nodes.resize(1);
  o.password = cluster.password();
  return Value(sluice::RedisStore::Create(o));
}

std::shared_ptr<sluice::RedisStore> SentinelStore(const LocalSentinelGroup& group) {
  sluice::RedisOptions o = Generous();
  o.sentinel_master = group.service();
  o.sentinels = NodesOf(group.Sentinels());
  o.password = group.password();
  o.sentinel_password = group.sentinel_password();
  return Value(sluice::RedisStore::Create(o));
}

sluice::ClusterOptions Cluster(std::shared_ptr<sluice::RedisStore> store, const std::string& name,
                               FailureMode on_failure) {
  sluice::ClusterOptions c;
  c.store = std::move(store);
  c.redis_name = name;
  c.on_failure = on_failure;
  c.local_share = 1;
  return c;
}

std::unique_ptr<RateLimiter> Limiter(std::shared_ptr<sluice::RedisStore> store,
                                     const std::string& name, int64_t limit,
                                     FailureMode on_failure = FailureMode::kDeny) {
  RateLimiter::Options o;
  o.windows = {Year(limit)};
  o.cluster = Cluster(std::move(store), name, on_failure);
  return Value(RateLimiter::Create(o));
}

std::unique_ptr<ConcurrencyLimiter> Cap(std::shared_ptr<sluice::RedisStore> store,
                                        const std::string& name, int64_t max_in_flight) {
  ConcurrencyLimiter::Options o;
  o.max_in_flight = max_in_flight;
  o.cluster = Cluster(std::move(store), name, FailureMode::kDeny);
  return Value(ConcurrencyLimiter::Create(o));
}

// The Cluster slot that a limiter's state for `key` lives in.
int SlotOf(const sluice::RedisStore& store, const std::string& redis_name,
           const std::string& key) {
  return sluice::internal::KeySlot(
      sluice::internal::KeyTag(store, redis_name, sluice::internal::DigestKey(key)));
}

// How many of the cluster's (first) masters hold some key.
int MastersHoldingKeys(const LocalRedisCluster& cluster) {
  int holding = 0;
  for (int m = 0; m < cluster.masters(); ++m) {
    auto size = cluster.Call(m, {"DBSIZE"});
    holding += size != nullptr && size->integer > 0 ? 1 : 0;
  }
  return holding;
}

// Decisions made in a loop on other threads while the topology changes under them.
class Load {
 public:
  Load(int threads, std::function<void(int thread, int64_t i)> decide) {
    for (int t = 0; t < threads; ++t) {
      threads_.emplace_back([this, t, decide] {
        for (int64_t i = 0; !stop_.load(); ++i) {
          const auto start = Clock::now();
          decide(t, i);
          const auto took = std::chrono::duration_cast<std::chrono::milliseconds>(
              Clock::now() - start).count();
          int64_t seen = longest_ms_.load();
          while (took > seen && !longest_ms_.compare_exchange_weak(seen, took)) {
          }
          calls_.fetch_add(1);
        }
      });
    }
  }
  ~Load() { Stop(); }
  void Stop() {
    stop_ = true;
    for (auto& t : threads_) {
      if (t.joinable()) t.join();
    }
  }
  int64_t calls() const { return calls_.load(); }
  int64_t longest_ms() const { return longest_ms_.load(); }

 private:
  std::atomic<bool> stop_{false};
  std::atomic<int64_t> calls_{0}, longest_ms_{0};
  std::vector<std::thread> threads_;
};

}  // namespace

TEST_CASE("cluster scope on a 3-master Redis Cluster is exact across fork()ed processes, one seed given") {
  LocalRedisCluster cluster(3, 0);
  auto store = ClusterStore(cluster, /*one_seed=*/true);
  REQUIRE(store->Check().ok());
  constexpr int kKeys = 24, kLimit = 20, kChildren = 3, kTries = 12;
  // Every child tries each key kTries times: 36 tries for 20 places per key.
  const int admitted = ForkAndSum(kChildren, [&] {
    auto limiter = Limiter(store, "exact", kLimit);
    int mine = 0;
    for (int i = 0; i < kTries; ++i) {
      for (int k = 0; k < kKeys; ++k) {
        absl::StatusOr<sluice::Decision> d = limiter->TryAcquire("tenant-" + std::to_string(k));
        if (!d.ok()) return -100000;  // an error: fails the sum below
        mine += d->allowed ? 1 : 0;
      }
    }
    return limiter->failure_mode_decisions() == 0 ? mine : -100000;
  });
  CHECK(admitted == kKeys * kLimit);
  // The keys live on every master, each reached through the slot map.
  CHECK(MastersHoldingKeys(cluster) == 3);
}

TEST_CASE("every cluster-scope object and the cache's Redis tier work on a Redis Cluster") {
  LocalRedisCluster cluster(3, 0);
  auto store = ClusterStore(cluster);
  auto other_store = ClusterStore(cluster, /*one_seed=*/true);  // another process's, say
  constexpr int kKeys = 24;
  auto key = [](int k) { return "tenant-" + std::to_string(k); };
  auto count = [&](const std::function<absl::StatusOr<sluice::Decision>(const std::string&)>& f,
                   int tries) {
    int admitted = 0;
    for (int k = 0; k < kKeys; ++k) {
      for (int i = 0; i < tries; ++i) {
        absl::StatusOr<sluice::Decision> d = f(key(k));
        REQUIRE(d.ok());
        admitted += d->allowed ? 1 : 0;
      }
    }
    return admitted;
  };

  SECTION("RateLimiter: GCRA strict, sliding window, leased") {
    auto gcra = Limiter(store, "gcra", 5);
    CHECK(count([&](const std::string& k) { return gcra->TryAcquire(k); }, 8) == kKeys * 5);
    RateLimiter::Options sliding_options;
    sliding_options.windows = {sluice::Window::Sliding(4, absl::Hours(1))};
    sliding_options.cluster = Cluster(store, "sliding", FailureMode::kDeny);
    auto sliding = Value(RateLimiter::Create(sliding_options));
    CHECK(count([&](const std::string& k) { return sliding->TryAcquire(k); }, 7) == kKeys * 4);
    RateLimiter::Options leased_options;
    leased_options.windows = {Year(40)};
    leased_options.cluster = Cluster(store, "leased", FailureMode::kDeny);
    leased_options.cluster.mode = sluice::ClusterMode::kLeased;
    auto leased = Value(RateLimiter::Create(leased_options));
    const int admitted = count([&](const std::string& k) { return leased->TryAcquire(k); }, 50);
    CHECK(admitted <= kKeys * 40);  // never more than Redis charged
    CHECK(admitted > 0);
    CHECK(leased->failure_mode_decisions() == 0);
  }
  SECTION("LeakyBucket books one schedule per key") {
    sluice::LeakyBucket::Options o;
    o.rate = 1000;
    o.per = absl::Hours(24 * 366);
    o.max_wait = o.per / 1000 * 3;  // the first, then 3 more a slot apart
    o.cluster = Cluster(store, "shape", FailureMode::kDeny);
    auto bucket = Value(sluice::LeakyBucket::Create(o));
    CHECK(count([&](const std::string& k) { return bucket->TryAcquire(k); }, 6) == kKeys * 4);
  }
  SECTION("TokenBudget reserves and settles, exact balance") {
    sluice::TokenBudget::Options o;
    o.windows = {Year(1000)};
    o.cluster = Cluster(store, "tokens", FailureMode::kDeny);
    auto budget = Value(sluice::TokenBudget::Create(o));
    for (int k = 0; k < kKeys; ++k) {
      absl::StatusOr<sluice::TokenBudget::Reservation> r = budget->TryReserve(key(k), 300);
      REQUIRE(r.ok());
      REQUIRE(static_cast<bool>(*r));
      REQUIRE(r->Settle(100 + k).ok());
      CHECK(budget->Peek(key(k)).remaining == 1000 - 100 - k);
    }
  }
  SECTION("ConcurrencyLimiter holds its cap and frees every slot") {
    auto cap = Cap(store, "cap", 2);
    for (int k = 0; k < kKeys; ++k) {
      ConcurrencyLimiter::Permit a = cap->TryAcquire(key(k));
      ConcurrencyLimiter::Permit b = cap->TryAcquire(key(k));
      ConcurrencyLimiter::Permit c = cap->TryAcquire(key(k));
      CHECK(a.held());
      CHECK(b.held());
      CHECK_FALSE(c.held());
      CHECK(c.status().ok());
      CHECK(cap->InFlight(key(k)) == 2);
    }
    for (int k = 0; k < kKeys; ++k) {
      CHECK(Eventually([&] { return cap->InFlight(key(k)) == 0; }, std::chrono::seconds(5)));
    }
  }
  SECTION("the ResponseCache's Redis tier: one cache's answer is another's hit") {
    auto make_cache = [](std::shared_ptr<sluice::RedisStore> s) {
      sluice::ResponseCache::Options o;
      o.max_bytes = 1 << 20;
      o.redis = std::move(s);
      o.redis_name = "answers";
      return Value(sluice::ResponseCache::Create(o));
    };
    auto writer = make_cache(store);
    auto reader = make_cache(other_store);
    std::vector<sluice::CacheKey> keys;
    for (int k = 0; k < kKeys; ++k) {
      keys.push_back(Value(sluice::MakeCacheKey(
          R"({"model":"m","messages":[{"role":"user","content":"q)" + std::to_string(k) + "\"}]}",
          "tenant")));
      REQUIRE(writer->Put(keys.back(), {.body = "answer " + std::to_string(k)}, absl::Minutes(5)));
    }
    REQUIRE(Eventually([&] { return writer->stats().redis_writes == kKeys; },
                       std::chrono::seconds(10)));
    for (int k = 0; k < kKeys; ++k) {
      sluice::FetchResult r = reader->Fetch(keys[k]);
      REQUIRE(r.wait.has_value());
      r.wait->Block();
      r = r.wait->Result();
      REQUIRE(r.hit != nullptr);
      CHECK(r.hit->body == "answer " + std::to_string(k));
    }
    CHECK(reader->stats().redis_hits == kKeys);
    CHECK(reader->stats().redis_errors == 0);
  }
  CHECK(store->stats().config_errors == 0);
}

TEST_CASE("cluster scope follows ASK and MOVED while a slot moves, and stays exact") {
  LocalRedisCluster cluster(3, 0);
  auto store = ClusterStore(cluster);
  auto limiter = Limiter(store, "moving", 100);
  const std::string key = "tenant-on-the-move";
  const int slot = SlotOf(*store, "moving", key);
  const int from = cluster.MasterForSlot(slot);
  const int to = (from + 1) % 3;
  int admitted = 0;
  auto take = [&](int n) {
    for (int i = 0; i < n; ++i) {
      absl::StatusOr<sluice::Decision> d = limiter->TryAcquire(key);
      REQUIRE(d.ok());
      admitted += d->allowed ? 1 : 0;
    }
  };
  take(30);
  cluster.BeginMigration(slot, from, to);
  take(10);                                // the keys are still on the old owner
  REQUIRE(cluster.MigrateKeys(slot) > 0);  // now the old owner answers ASK
  take(10);
  CHECK(store->stats().redirected >= 10);  // each went to the importing node after ASKING
  REQUIRE(cluster.FinishMigration(slot));  // and now MOVED, once, then the new map
  take(70);                                // 20 more than the limit leaves
  CHECK(admitted == 100);
  CHECK(limiter->failure_mode_decisions() == 0);
  CHECK(store->stats().topology_changes >= 1);
  CHECK(store->stats().config_errors == 0);
}

TEST_CASE("cluster scope stays exact while slots move under load") {
  LocalRedisCluster cluster(3, 0);
  auto store = ClusterStore(cluster);
  auto other = ClusterStore(cluster, /*one_seed=*/true);  // a second process's store, say
  constexpr int kKeys = 6, kLimit = 1'000'000;
  auto key = [](int64_t k) { return "k" + std::to_string(k % kKeys); };
  auto mine = Limiter(store, "busy", kLimit);
  auto theirs = Limiter(other, "busy", kLimit);
  std::atomic<int64_t> admitted{0}, errors{0};
  auto decide = [&](RateLimiter& limiter, int64_t i) {
    absl::StatusOr<sluice::Decision> d = limiter.TryAcquire(key(i));
    if (!d.ok()) errors.fetch_add(1);
    if (d.ok() && d->allowed) admitted.fetch_add(1);
  };
  {
    Load load(2, [&](int t, int64_t i) { decide(t == 0 ? *mine : *theirs, i); });
    REQUIRE(Eventually([&] { return load.calls() > 100; }, std::chrono::seconds(10)));
    // Each key's slot moves one master on, in steps, while both stores decide.
    for (int k = 0; k < kKeys; ++k) {
      const int slot = SlotOf(*store, "busy", key(k));
      const int from = cluster.MasterForSlot(slot);
      cluster.BeginMigration(slot, from, (from + 1) % 3);
      cluster.MigrateKeys(slot);
      REQUIRE(cluster.FinishMigration(slot));
    }
    const int64_t calls = load.calls();
    REQUIRE(Eventually([&] { return load.calls() > calls + 100; }, std::chrono::seconds(10)));
  }
  // A refusal of the failure mode (deny) admits nothing, so whatever the resharding cost, what
  // was admitted plus what each key has left is the limit exactly (no refill within a test).
  int64_t left = 0;
  for (int k = 0; k < kKeys; ++k) {
    const int64_t failure_mode_before = mine->failure_mode_decisions();
    absl::StatusOr<sluice::Decision> d = mine->TryAcquire(key(k));
    REQUIRE(d.ok());
    REQUIRE(mine->failure_mode_decisions() == failure_mode_before);  // Redis's own count
    admitted.fetch_add(d->allowed ? 1 : 0);
    left += d->remaining;
  }
  admitted.fetch_add(left);
  CHECK(admitted.load() == int64_t{kKeys} * kLimit);
  CHECK(errors.load() == 0);
  CHECK(store->stats().redirected + other->stats().redirected > 0);
  CHECK(store->stats().config_errors + other->stats().config_errors == 0);
}

TEST_CASE("a migrating slot costs its own keys the failure mode, never the other slots") {
  LocalRedisCluster cluster(3, 0);
  sluice::RedisOptions o = Generous();
  o.cluster_nodes = NodesOf(cluster.Seeds());
  o.reconnect_interval = absl::Seconds(2);  // a breaker, if one opened, would show
  auto store = Value(sluice::RedisStore::Create(o));
  auto caps = Cap(store, "migrating-cap", 5);
  const std::string app = "app";
  const int slot = SlotOf(*store, "migrating-cap", app);
  const int from = cluster.MasterForSlot(slot);
  const int to = (from + 1) % 3;
  // A key of another limiter on another master.
  auto limiter = Limiter(store, "elsewhere", 1'000'000);
  std::string other;
  for (int i = 0; other.empty(); ++i) {
    const std::string k = "t" + std::to_string(i);
    const int owner = cluster.MasterForSlot(SlotOf(*store, "elsewhere", k));
    if (owner != from && owner != to) other = k;
  }
  ConcurrencyLimiter::Permit held = caps->TryAcquire(app);
  REQUIRE(held.held());
  // The lease key exists, its tombstone key does not: a two-key script on a migrating slot gets
  // TRYAGAIN (Redis cannot tell "missing" from "moved"), on the source and then the target.
  cluster.BeginMigration(slot, from, to);
  ConcurrencyLimiter::Permit during = caps->TryAcquire(app);
  CHECK(during.status().ok());
  CHECK_FALSE(during.held());  // deny: this key's failure mode
  CHECK(caps->failure_mode_decisions() == 1);
  for (int i = 0; i < 20; ++i) {
    absl::StatusOr<sluice::Decision> d = limiter->TryAcquire(other);
    REQUIRE(d.ok());
    CHECK(d->allowed);
  }
  CHECK(limiter->failure_mode_decisions() == 0);  // the other slots stay strict
  CHECK(store->stats().fast_failures == 0);       // no breaker opened
  held = ConcurrencyLimiter::Permit();             // released while the slot migrates
  REQUIRE(cluster.MigrateKeys(slot) > 0);
  REQUIRE(cluster.FinishMigration(slot));
  // The release waited out the migration and landed on the new owner.
  CHECK(Eventually([&] { return caps->InFlight(app) == 0; }, std::chrono::seconds(10)));
  ConcurrencyLimiter::Permit after = caps->TryAcquire(app);
  CHECK(after.held());
  CHECK(caps->failure_mode_decisions() == 1);
}

TEST_CASE("cluster scope rides out a master's failover: no hang, no leaked permit") {
  LocalRedisCluster cluster(3, 1);
  auto store = ClusterStore(cluster);
  auto caps = Cap(store, "failover-cap", 2);
  auto limiter = Limiter(store, "failover-rate", 1'000'000'000);
  constexpr int kKeys = 12;
  REQUIRE(store->Check().ok());
  std::atomic<int64_t> errors{0};
  Load load(2, [&](int t, int64_t i) {
    const std::string key = "app-" + std::to_string((i * 2 + t) % kKeys);
    {
      ConcurrencyLimiter::Permit permit = caps->TryAcquire(key);
      if (!permit.status().ok()) errors.fetch_add(1);
    }  // released here: kept across the outage if Redis is away
    if (!limiter->TryAcquire(key).ok()) errors.fetch_add(1);
  });
  REQUIRE(Eventually([&] { return load.calls() > 50; }, std::chrono::seconds(10)));
  const auto killed_at = Clock::now();
  cluster.KillMaster(0);
  const std::optional<redis_topologies::Millis> failover =
      cluster.WaitForFailover(std::chrono::milliseconds(20000));
  REQUIRE(failover.has_value());
  // Strict again: a decision that is not the failure mode's.
  const int64_t failure_mode_before = limiter->failure_mode_decisions();
  REQUIRE(Eventually(
      [&] {
        const int64_t before = limiter->failure_mode_decisions();
        absl::StatusOr<sluice::Decision> d = limiter->TryAcquire("probe");
        return d.ok() && d->allowed && limiter->failure_mode_decisions() == before;
      },
      std::chrono::seconds(20)));
  const auto strict_after =
      std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - killed_at);
  const int64_t calls_before = load.calls();
  REQUIRE(Eventually([&] { return load.calls() > calls_before + 50; }, std::chrono::seconds(10)));
  load.Stop();
  std::printf("cluster failover: promoted after %lld ms, sluice strict again after %lld ms; "
              "%lld calls, longest %lld ms; failure-mode decisions %lld\n",
              static_cast<long long>(failover->count()),
              static_cast<long long>(strict_after.count()),
              static_cast<long long>(load.calls()), static_cast<long long>(load.longest_ms()),
              static_cast<long long>(failure_mode_before));
  CHECK(errors.load() == 0);  // the outage is the failure mode's, not an error
  CHECK(failure_mode_before > 0);
  // Every permit came back: releases kept across the outage, acquires whose outcome the outage
  // hid undone.
  for (int k = 0; k < kKeys; ++k) {
    INFO("app-" << k);
    CHECK(Eventually([&] { return caps->InFlight("app-" + std::to_string(k)) == 0; },
                     std::chrono::seconds(10)));
  }
  // The longest call is bounded by the timeouts (connect + command), not by the failover.
  CHECK(load.longest_ms() < 5000);
}

TEST_CASE("sentinel scope finds the master and follows a SENTINEL FAILOVER mid-load") {
  LocalSentinelGroup group(3, "data-secret", "sentinel-secret");
  auto store = SentinelStore(group);
  REQUIRE(store->Check().ok());
  auto caps = Cap(store, "sentinel-cap", 3);
  auto limiter = Limiter(store, "sentinel-rate", 1'000'000'000);
  std::atomic<int64_t> errors{0};
  Load load(2, [&](int t, int64_t i) {
    const std::string key = "app-" + std::to_string((i + t) % 6);
    {
      ConcurrencyLimiter::Permit permit = caps->TryAcquire(key);
      if (!permit.status().ok()) errors.fetch_add(1);
    }
    if (!limiter->TryAcquire(key).ok()) errors.fetch_add(1);
  });
  REQUIRE(Eventually([&] { return load.calls() > 50; }, std::chrono::seconds(10)));
  const int old_master = group.MasterPort();
  const auto started = Clock::now();
  group.Failover();
  REQUIRE(group.WaitForNewMaster(old_master, std::chrono::milliseconds(20000)).has_value());
  REQUIRE(Eventually(
      [&] {
        const int64_t before = limiter->failure_mode_decisions();
        absl::StatusOr<sluice::Decision> d = limiter->TryAcquire("probe");
        return d.ok() && d->allowed && limiter->failure_mode_decisions() == before &&
               store->stats().topology_changes >= 1;
      },
      std::chrono::seconds(20)));
  const auto strict_after =
      std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - started);
  const int64_t calls_before = load.calls();
  REQUIRE(Eventually([&] { return load.calls() > calls_before + 50; }, std::chrono::seconds(10)));
  load.Stop();
  std::printf("sentinel failover: sluice strict on the new master after %lld ms; %lld calls, "
              "longest %lld ms; failure-mode decisions %lld\n",
              static_cast<long long>(strict_after.count()), static_cast<long long>(load.calls()),
              static_cast<long long>(load.longest_ms()),
              static_cast<long long>(limiter->failure_mode_decisions()));
  CHECK(errors.load() == 0);
  for (int k = 0; k < 6; ++k) {
    INFO("app-" << k);
    CHECK(Eventually([&] { return caps->InFlight("app-" + std::to_string(k)) == 0; },
                     std::chrono::seconds(10)));
  }
  // The new master holds sluice's keys now.
  auto size = group.CallData(group.MasterPort(), {"DBSIZE"});
  REQUIRE(size != nullptr);
  CHECK(size->integer > 0);
}

TEST_CASE("sentinel scope is exact across fork()ed processes") {
  LocalSentinelGroup group(3);
  auto store = SentinelStore(group);
  REQUIRE(store->Check().ok());
  const int admitted = ForkAndSum(3, [&] {
    auto limiter = Limiter(store, "exact", 25);
    int mine = 0;
    for (int i = 0; i < 20; ++i) {
      for (int k = 0; k < 4; ++k) {
        absl::StatusOr<sluice::Decision> d = limiter->TryAcquire("k" + std::to_string(k));
        if (!d.ok()) return -100000;
        mine += d->allowed ? 1 : 0;
      }
    }
    return limiter->failure_mode_decisions() == 0 ? mine : -100000;
  });
  CHECK(admitted == 4 * 25);
}

TEST_CASE("sentinel misconfiguration is loud: an unknown service, a wrong sentinel password") {
  LocalSentinelGroup group(3, "", "sentinel-secret");
  sluice::RedisOptions o = Generous();
  o.sentinels = NodesOf(group.Sentinels());
  o.sentinel_master = "no-such-service";
  o.sentinel_password = "sentinel-secret";
  auto unknown = Value(sluice::RedisStore::Create(o));
  absl::Status s = unknown->Check();
  CHECK(absl::IsFailedPrecondition(s));
  CHECK(std::string(s.message()).find("no-such-service") != std::string::npos);
  auto limiter = Limiter(unknown, "loud", 10, FailureMode::kAllow);
  CHECK(absl::IsFailedPrecondition(limiter->TryAcquire("k").status()));
  CHECK(limiter->failure_mode_decisions() == 0);

  o.sentinel_master = group.service();
  o.sentinel_password = "wrong";
  absl::Status wrong = Value(sluice::RedisStore::Create(o))->Check();
  CHECK(absl::IsPermissionDenied(wrong));
  CHECK(std::string(wrong.message()).find("sentinel_password") != std::string::npos);

  // A data node given as a sentinel: not a Sentinel, said so.
  sluice::RedisOptions data = Generous();
  data.sentinels = {{"127.0.0.1", group.MasterPort()}};
  data.sentinel_master = group.service();
  absl::Status not_sentinel = Value(sluice::RedisStore::Create(data))->Check();
  CHECK(absl::IsFailedPrecondition(not_sentinel));
  CHECK(std::string(not_sentinel.message()).find("not a Sentinel") != std::string::npos);
}

TEST_CASE("cluster misconfiguration is loud: a standalone server in cluster_nodes") {
  LocalRedis plain;
  sluice::RedisOptions o = Generous();
  o.cluster_nodes = {{"127.0.0.1", plain.port()}};
  auto store = Value(sluice::RedisStore::Create(o));
  absl::Status s = store->Check();
  CHECK(absl::IsFailedPrecondition(s));
  CHECK(std::string(s.message()).find("not a Redis Cluster node") != std::string::npos);
}

TEST_CASE("TLS: a store verifies the server's certificate, exact across fork()ed processes") {
  const sluice_test::TlsFiles& certs = sluice_test::TestCertificates();
  REQUIRE_FALSE(certs.ca.empty());
  const int tls_port = LocalRedis::FreePort();
  LocalRedis server(certs.RedisArgs(tls_port, /*require_client_cert=*/false));
  sluice::RedisOptions o = Generous();
  o.port = tls_port;
  o.tls.enabled = true;
  o.tls.ca_file = certs.ca;
  auto store = Value(sluice::RedisStore::Create(o));
  REQUIRE(store->Check().ok());
  const int admitted = ForkAndSum(3, [&] {
    auto limiter = Limiter(store, "tls", 30);
    int mine = 0;
    for (int i = 0; i < 20; ++i) {
      absl::StatusOr<sluice::Decision> d = limiter->TryAcquire("k");
      if (!d.ok()) return -100000;
      mine += d->allowed ? 1 : 0;
    }
    return limiter->failure_mode_decisions() == 0 ? mine : -100000;
  });
  CHECK(admitted == 30);

  SECTION("a certificate from another CA is refused, loudly, never the failure mode") {
    o.tls.ca_file = certs.other_ca;
    auto impostor = Value(sluice::RedisStore::Create(o));
    absl::Status s = impostor->Check();
    CHECK(absl::IsFailedPrecondition(s));
    CHECK(std::string(s.message()).find("verify") != std::string::npos);
    auto limiter = Limiter(impostor, "tls", 30, FailureMode::kAllow);
    CHECK(absl::IsFailedPrecondition(limiter->TryAcquire("k").status()));
    CHECK(limiter->failure_mode_decisions() == 0);
  }
  SECTION("plain text to a TLS port, and TLS to a plain port, are refused without a hang") {
    o.tls.enabled = false;
    o.tls.ca_file.clear();
    absl::Status plain = Value(sluice::RedisStore::Create(o))->Check();
    CHECK_FALSE(plain.ok());
    CHECK(std::string(plain.message()).find("TLS port") != std::string::npos);
    o.tls.enabled = true;
    o.tls.ca_file = certs.ca;
    o.port = server.port();
    // Both look like a server that does not answer (a timeout, a reset), so they are transport
    // failures (the failure mode), but the message says what to check.
    absl::Status s = Value(sluice::RedisStore::Create(o))->Check();
    CHECK_FALSE(s.ok());
    CHECK(std::string(s.message()).find("plain-text port") != std::string::npos);
  }
}

TEST_CASE("TLS on a Redis Cluster: the slot map's TLS ports, every master verified") {
  const sluice_test::TlsFiles& certs = sluice_test::TestCertificates();
  REQUIRE_FALSE(certs.ca.empty());
  std::vector<std::string> tls = certs.RedisArgs(0, /*require_client_cert=*/false);
  tls.erase(tls.begin(), tls.begin() + 2);  // the fixture gives each node its own --tls-port
  LocalRedisCluster cluster(3, 0, {}, {}, std::chrono::milliseconds(20000), tls);
  sluice::RedisOptions o = Generous();
  o.cluster_nodes = NodesOf(cluster.TlsSeeds());
  o.cluster_nodes.resize(1);
  o.tls.enabled = true;
  o.tls.ca_file = certs.ca;
  auto store = Value(sluice::RedisStore::Create(o));
  REQUIRE(store->Check().ok());
  auto limiter = Limiter(store, "tls-cluster", 5);
  int admitted = 0;
  for (int k = 0; k < 24; ++k) {
    for (int i = 0; i < 7; ++i) {
      absl::StatusOr<sluice::Decision> d = limiter->TryAcquire("tenant-" + std::to_string(k));
      REQUIRE(d.ok());
      admitted += d->allowed ? 1 : 0;
    }
  }
  CHECK(admitted == 24 * 5);
  CHECK(limiter->failure_mode_decisions() == 0);
  CHECK(MastersHoldingKeys(cluster) == 3);

  SECTION("a certificate from another CA is refused on the cluster too") {
    o.tls.ca_file = certs.other_ca;
    absl::Status s = Value(sluice::RedisStore::Create(o))->Check();
    CHECK(absl::IsFailedPrecondition(s));
  }
}
