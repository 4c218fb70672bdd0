// Cluster scope for LeakyBucket, TokenBudget and ConcurrencyLimiter against a real redis-server
// the test starts on a free port. (RateLimiter: cluster_scope_test.cc.)
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <mutex>
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
using sluice::TokenBudget;
using sluice_test::ErrorOf;
using sluice_test::ForkAndSum;
using sluice_test::Store;
using sluice_test::Value;
using sluice_test::Year;

namespace {

constexpr absl::Duration kYear = absl::Hours(24 * 366);

sluice::ClusterOptions Cluster(std::shared_ptr<sluice::RedisStore> store, const std::string& rule,
                               FailureMode on_failure = FailureMode::kLocal, int64_t share = 1) {
  sluice::ClusterOptions c;
  c.store = std::move(store);
  c.redis_name = rule;
  c.on_failure = on_failure;
  c.local_share = share;
  return c;
}

// 1000 departures a year: one every ~8.8 hours, so no slot frees while a test runs.
std::unique_ptr<LeakyBucket> Bucket(sluice::ClusterOptions cluster, int64_t max_wait_slots) {
  LeakyBucket::Options o;
  o.rate = 1000;
  o.per = kYear;
  o.max_wait = kYear / 1000 * max_wait_slots;
  o.cluster = std::move(cluster);
  return Value(LeakyBucket::Create(o));
}

std::unique_ptr<TokenBudget> Budget(sluice::ClusterOptions cluster, int64_t tokens) {
  TokenBudget::Options o;
  o.windows = {Year(tokens)};
  o.cluster = std::move(cluster);
  return Value(TokenBudget::Create(o));
}

std::unique_ptr<ConcurrencyLimiter> Cap(sluice::ClusterOptions cluster, int64_t max_in_flight,
                                        absl::Duration lease = absl::Minutes(10)) {
  ConcurrencyLimiter::Options o;
  o.max_in_flight = max_in_flight;
  o.lease = lease;
  o.cluster = std::move(cluster);
  return Value(ConcurrencyLimiter::Create(o));
}

// Polls `ready` every 5 ms for up to `limit`; for what only Redis's own clock can bring (a lease
// ending), since the server's time cannot be injected.
bool Eventually(const std::function<bool()>& ready, std::chrono::milliseconds limit) {
  const auto deadline = std::chrono::steady_clock::now() + limit;
  while (std::chrono::steady_clock::now() < deadline) {
    if (ready()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return ready();
}

}  // namespace

TEST_CASE("cluster LeakyBucket: threads book one schedule, one slot apart, up to max_wait") {
  LocalRedis redis;
  auto bucket = Bucket(Cluster(Store(redis.port()), "shape"), /*max_wait_slots=*/10);
  std::mutex mu;
  std::vector<absl::StatusOr<sluice::Decision>> results;
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&] {  // no Catch macros off the main thread: it is not thread-safe
      for (int i = 0; i < 10; ++i) {
        absl::StatusOr<sluice::Decision> d = bucket->TryAcquire("provider");
        std::lock_guard<std::mutex> lock(mu);
        results.push_back(std::move(d));
      }
    });
  }
  for (auto& t : threads) t.join();
  std::vector<int64_t> delays;
  int refused = 0;
  for (const auto& d : results) {
    REQUIRE(d.ok());
    if (d->allowed) {
      delays.push_back(d->delay_nanos);
    } else {
      ++refused;
      CHECK(d->retry_after_nanos > 0);
    }
  }
  // burst 1 goes at once, then 10 slots within max_wait: 11 of 40.
  REQUIRE(delays.size() == 11);
  CHECK(refused == 29);
  std::sort(delays.begin(), delays.end());
  const int64_t slot = absl::ToInt64Nanoseconds(kYear / 1000);
  for (size_t k = 0; k < delays.size(); ++k) {
    // Redis's clock moves on between calls (microseconds): each delay is k slots, a little less.
    CHECK(delays[k] <= static_cast<int64_t>(k) * slot);
    CHECK(delays[k] > static_cast<int64_t>(k) * slot - absl::ToInt64Nanoseconds(absl::Seconds(5)));
  }
  CHECK(bucket->failure_mode_decisions() == 0);
}

TEST_CASE("cluster LeakyBucket: Start() is pollable, and a dead Redis applies the failure mode") {
  LocalRedis redis;
  auto store = Store(redis.port(), /*reconnect=*/absl::Seconds(30));
  auto deny = Bucket(Cluster(store, "shape-deny", FailureMode::kDeny), 2);
  auto local = Bucket(Cluster(store, "shape-local", FailureMode::kLocal, /*share=*/4), 200);
  sluice::PendingDecision pending = Value(deny->Start("k"));
  CHECK(pending.fd() >= 0);
  CHECK(pending.Get().allowed);
  redis.Kill();
  CHECK_FALSE(Value(deny->TryAcquire("k")).allowed);
  // Locally the bucket runs at a quarter of the rate: its max wait holds a quarter of the slots.
  int admitted = 0;
  for (int i = 0; i < 100; ++i) admitted += Value(local->TryAcquire("k")).allowed ? 1 : 0;
  CHECK(admitted == 51);  // burst 1 + (200 slots of the full rate = 50 local slots)
  CHECK(local->failure_mode_decisions() == 100);
}

// Named "fork": see cluster_scope_test.cc.
TEST_CASE("cluster TokenBudget after fork: reserve/settle from several processes, exact balance") {
  LocalRedis redis;
  auto budget = Budget(Cluster(Store(redis.port()), "tokens"), 10'000);
  REQUIRE(Value(budget->TryReserve("tenant", 100)).Settle(40).ok());  // the parent, before fork
  const int reservations = ForkAndSum(4, [&] {
    int granted = 0;
    for (;;) {  // no Catch macros in a child: an error spoils the sum instead
      absl::StatusOr<TokenBudget::Reservation> r = budget->TryReserve("tenant", 100);
      if (!r.ok()) return -1000;
      if (!*r) return granted;
      if (!r->Settle(60).ok()) return -1000;
      ++granted;
    }
  });
  const int64_t charged = 40 + 60 * int64_t{reservations};
  CHECK(charged <= 10'000);
  // A child is refused only when less than its estimate is left, counting the others' pending
  // estimates (each at most 40 over what they settle).
  CHECK(charged > 10'000 - 100 - 3 * 40);
  CHECK(budget->Peek("tenant").remaining == 10'000 - charged);  // nothing lost, nothing doubled
}

TEST_CASE("cluster TokenBudget: refunds, debt, charge and cancel") {
  LocalRedis redis;
  auto budget = Budget(Cluster(Store(redis.port()), "tokens-debt"), 1000);
  TokenBudget::Reservation big = Value(budget->TryReserve("t", 800));
  REQUIRE(big);
  CHECK_FALSE(Value(budget->TryReserve("t", 300)));  // 200 left: refused before it starts
  TokenBudget::Reservation small = Value(budget->TryReserve("t", 200));
  REQUIRE(small);
  REQUIRE(small.Cancel().ok());
  CHECK(budget->Peek("t").remaining == 200);
  const sluice::Decision after = Value(big.Settle(1100));  // 300 over: carried as debt
  CHECK(after.remaining == -100);
  CHECK_FALSE(after.allowed);
  CHECK(after.retry_after_nanos > 0);
  const TokenBudget::Reservation refused = Value(budget->TryReserve("t", 0));
  CHECK_FALSE(refused);  // in debt: even a zero estimate waits
  CHECK(Value(budget->Charge("t", 50)).remaining == -150);
  CHECK(ErrorOf(big.Settle(10)).find("not pending") != std::string::npos);
  // Started: the settle is on its way; the reservation is settled from then on.
  TokenBudget::Reservation other = Value(budget->TryReserve("u", 500));
  sluice::PendingDecision settling = Value(other.StartSettle(100));
  CHECK_FALSE(other.pending());
  CHECK(settling.Get().remaining == 900);
}

TEST_CASE("cluster TokenBudget: Redis down, the local share decides, and Redis again once back") {
  LocalRedis redis;
  auto store = Store(redis.port());
  auto budget = Budget(Cluster(store, "tokens-down", FailureMode::kLocal, /*share=*/2), 1000);
  REQUIRE(Value(budget->TryReserve("t", 900)));
  redis.Kill();
  CHECK(Value(budget->TryReserve("t", 500)));  // the local stand-in: 500 of 1000
  CHECK_FALSE(Value(budget->TryReserve("t", 1)));
  CHECK(budget->failure_mode_decisions() == 2);
  REQUIRE(redis.Start());  // an empty Redis: the budget starts over
  CHECK(Eventually([&] { return budget->Peek("t").remaining == 1000; },
                   std::chrono::seconds(5)));
}

// Named "fork": see cluster_scope_test.cc.
TEST_CASE("cluster ConcurrencyLimiter after fork: processes share one cap exactly") {
  LocalRedis redis;
  auto cap = Cap(Cluster(Store(redis.port()), "cap"), 5);
  ConcurrencyLimiter::Permit parent = cap->TryAcquire("app");
  REQUIRE(parent);
  constexpr int kChildren = 4;
  // Every child holds what it got until all have tried, so the sum is what was held at once.
  auto* tried = static_cast<std::atomic<int>*>(
      mmap(nullptr, sizeof(std::atomic<int>), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS,
           -1, 0));
  tried->store(0);
  const int held = ForkAndSum(kChildren, [&] {
    std::vector<ConcurrencyLimiter::Permit> permits;
    for (int i = 0; i < 10; ++i) {
      ConcurrencyLimiter::Permit p = cap->TryAcquire("app");
      if (p) permits.push_back(std::move(p));
    }
    ++*tried;
    while (tried->load() < kChildren) std::this_thread::sleep_for(std::chrono::milliseconds(1));
    const int n = static_cast<int>(permits.size());
    for (auto& p : permits) (void)p.Release();  // sent without waiting ...
    // ... and ordered before this process's next command on the same connection.
    (void)cap->InFlight("app");
    return n;
  });
  munmap(tried, sizeof(std::atomic<int>));
  CHECK(held == 4);  // the parent holds the fifth
  CHECK(cap->InFlight("app") == 1);
  REQUIRE(parent.Release().ok());
  CHECK(cap->InFlight("app") == 0);
}

TEST_CASE("cluster ConcurrencyLimiter: threads never exceed the cap, and releases free slots") {
  LocalRedis redis;
  auto cap = Cap(Cluster(Store(redis.port()), "cap-threads"), 3);
  std::atomic<int> in_flight{0}, peak{0}, granted{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < 50; ++i) {
        ConcurrencyLimiter::Permit p = cap->TryAcquire("app");
        if (!p) continue;
        const int now = ++in_flight;
        int seen = peak.load();
        while (now > seen && !peak.compare_exchange_weak(seen, now)) {
        }
        ++granted;
        --in_flight;  // before the release is sent: the count never lags the cap
      }
    });
  }
  for (auto& t : threads) t.join();
  CHECK(peak <= 3);
  CHECK(granted >= 3);
  CHECK(Eventually([&] { return cap->InFlight("app") == 0; }, std::chrono::seconds(2)));
}

// Named "fork": see cluster_scope_test.cc.
TEST_CASE("cluster ConcurrencyLimiter after fork: a killed holder's slots come back at lease end") {
  LocalRedis redis;
  auto cap = Cap(Cluster(Store(redis.port()), "cap-crash"), 3, absl::Milliseconds(300));
  ForkAndSum(1, [&] {
    std::vector<ConcurrencyLimiter::Permit> leaked;
    for (int i = 0; i < 3; ++i) leaked.push_back(cap->TryAcquire("app"));
    (void)cap->InFlight("app");  // the acquires are in
    _exit(0);                    // "crashes": no destructor runs, nothing is released
    return 0;
  });
  CHECK(cap->InFlight("app") == 3);
  CHECK_FALSE(cap->TryAcquire("app"));
  // Once the leases end, Redis reclaims them atomically in the next acquire: none leaked.
  CHECK(Eventually([&] { return cap->InFlight("app") == 0; }, std::chrono::seconds(5)));
  std::vector<ConcurrencyLimiter::Permit> again;
  for (int i = 0; i < 3; ++i) again.push_back(cap->TryAcquire("app"));
  for (const auto& p : again) CHECK(p);
}

TEST_CASE("cluster ConcurrencyLimiter: renew keeps a slot, and an expired lease cannot be renewed") {
  LocalRedis redis;
  auto cap = Cap(Cluster(Store(redis.port()), "cap-renew"), 1, absl::Milliseconds(200));
  ConcurrencyLimiter::Permit p = cap->TryAcquire("app");
  REQUIRE(p);
  REQUIRE(p.Renew(absl::Minutes(5)).ok());
  sluice::Pending<absl::Status> renewing = p.StartRenew(absl::Minutes(5));
  CHECK(renewing.fd() >= 0);
  CHECK(renewing.Get().ok());
  REQUIRE(p.Renew(absl::Milliseconds(50)).ok());
  REQUIRE(Eventually([&] { return cap->InFlight("app") == 0; }, std::chrono::seconds(5)));
  const absl::Status late = p.Renew();
  CHECK(absl::IsFailedPrecondition(late));
  CHECK_FALSE(p);  // it holds nothing any more
  CHECK(cap->TryAcquire("app"));
}

TEST_CASE("cluster ConcurrencyLimiter: Redis down, each failure mode, and Start() is pollable") {
  LocalRedis redis;
  auto store = Store(redis.port(), /*reconnect=*/absl::Seconds(30));
  auto allow = Cap(Cluster(store, "cap-allow", FailureMode::kAllow), 1);
  auto deny = Cap(Cluster(store, "cap-deny", FailureMode::kDeny), 8);
  auto local = Cap(Cluster(store, "cap-local", FailureMode::kLocal, /*share=*/4), 8);
  sluice::Pending<ConcurrencyLimiter::Permit> pending = deny->Start("app");
  CHECK(pending.fd() >= 0);
  ConcurrencyLimiter::Permit before = pending.Get();
  CHECK(before);
  CHECK_FALSE(pending.Get());  // a permit is handed over once
  redis.Kill();
  ConcurrencyLimiter::Permit a1 = allow->TryAcquire("app");
  ConcurrencyLimiter::Permit a2 = allow->TryAcquire("app");
  CHECK(a1);  // fail open: permits held nowhere
  CHECK(a2);
  CHECK(a1.Release().ok());
  CHECK_FALSE(deny->TryAcquire("app"));  // fail closed
  std::vector<ConcurrencyLimiter::Permit> locals;
  for (int i = 0; i < 5; ++i) locals.push_back(local->TryAcquire("app"));
  CHECK(static_cast<bool>(locals[0]));
  CHECK(static_cast<bool>(locals[1]));
  CHECK_FALSE(locals[2]);  // this process's share: 8 / 4
  CHECK(local->failure_mode_decisions() == 5);
  locals.clear();  // local permits go back to the local table
  CHECK(local->TryAcquire("app"));
  CHECK(before.Release().ok());  // a release Redis never gets just expires there
}

TEST_CASE("cluster ConcurrencyLimiter: the local failure mode counts the permits still held "
          "through Redis") {
  LocalRedis redis;
  auto store = Store(redis.port(), /*reconnect=*/absl::Seconds(30));
  // A cap of 6 shared by 2 processes: each may hold 3 while Redis is away.
  auto cap = Cap(Cluster(store, "cap-held", FailureMode::kLocal, /*share=*/2), 6);
  ConcurrencyLimiter::Permit through_redis_1 = cap->TryAcquire("app");
  ConcurrencyLimiter::Permit through_redis_2 = cap->TryAcquire("app");
  REQUIRE(through_redis_1);
  REQUIRE(through_redis_2);
  CHECK(cap->failure_mode_decisions() == 0);
  redis.Kill();
  // Two of this process's 3 are taken by callers still running: 1 more, not 3.
  std::vector<ConcurrencyLimiter::Permit> during;
  for (int i = 0; i < 3; ++i) during.push_back(cap->TryAcquire("app"));
  CHECK(static_cast<bool>(during[0]));
  CHECK_FALSE(during[1]);
  CHECK_FALSE(during[2]);
  CHECK(during[1].status().ok());  // a refusal, not an error
  // Another key is not affected by this one's holders.
  CHECK(cap->TryAcquire("other-app"));
  // A holder through Redis finishes: its place is this process's again.
  CHECK(through_redis_1.Release().ok());
  ConcurrencyLimiter::Permit freed = cap->TryAcquire("app");
  CHECK(freed);
  CHECK_FALSE(cap->TryAcquire("app"));
}

TEST_CASE("cluster ConcurrencyLimiter: a release right before the store goes is still sent") {
  LocalRedis redis;
  // Each round: a fresh store and limiter take a slot, release it and are destroyed at once
  // (a worker exiting after its last request). The release must reach Redis all the same.
  for (int round = 0; round < 40; ++round) {
    auto store = Store(redis.port());
    auto cap = Cap(Cluster(store, "cap-last", FailureMode::kDeny), 1000);
    ConcurrencyLimiter::Permit permit = cap->TryAcquire("app");
    REQUIRE(permit);
    REQUIRE(permit.Release().ok());
  }  // the limiter, then the store, go here
  auto check = Cap(Cluster(Store(redis.port()), "cap-last", FailureMode::kDeny), 1000);
  CHECK(check->InFlight("app") == 0);
}

TEST_CASE("cluster options of the other objects are validated, naming the field") {
  LocalRedis redis;
  auto store = Store(redis.port());
  sluice::ClusterOptions leased = Cluster(store, "x");
  leased.mode = sluice::ClusterMode::kLeased;
  LeakyBucket::Options lb;
  lb.rate = 10;
  lb.cluster = leased;
  CHECK(ErrorOf(LeakyBucket::Create(lb)).find("cluster.mode must be kStrict") !=
        std::string::npos);
  TokenBudget::Options tb;
  tb.windows = {Year(10)};
  tb.cluster = leased;
  CHECK(ErrorOf(TokenBudget::Create(tb)).find("cluster.mode") != std::string::npos);
  ConcurrencyLimiter::Options cl;
  cl.max_in_flight = 2;
  cl.cluster = leased;
  CHECK(ErrorOf(ConcurrencyLimiter::Create(cl)).find("cluster.mode") != std::string::npos);
  cl.cluster = Cluster(store, "bad rule!");
  CHECK(ErrorOf(ConcurrencyLimiter::Create(cl)).find("cluster.redis_name") != std::string::npos);
  cl.cluster = Cluster(store, "ok");
  cl.lease = absl::Nanoseconds(1500);
  CHECK(ErrorOf(ConcurrencyLimiter::Create(cl)).find("lease must be a whole number") !=
        std::string::npos);
  cl.lease = absl::Seconds(1);
  cl.shared_region = "also-host";
  CHECK(ErrorOf(ConcurrencyLimiter::Create(cl)).find("two scopes") != std::string::npos);
  tb.cluster = Cluster(store, "ok");
  tb.shared_region = "also-host";
  CHECK(ErrorOf(TokenBudget::Create(tb)).find("two scopes") != std::string::npos);
  lb.cluster = Cluster(store, "ok", FailureMode::kLocal, 0);
  CHECK(ErrorOf(LeakyBucket::Create(lb)).find("cluster.local_share") != std::string::npos);
}
