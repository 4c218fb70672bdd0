// fork() while other threads are inside sluice objects (Gunicorn forking workers, Celery forking
// its pool): every child must come up healthy and use every object, and the parent must stay
// healthy. Against a redis-server the test starts.
//
// Named "fork": ThreadSanitizer cannot run threads in the child of a threaded fork, so the tsan
// preset leaves it out. Under AddressSanitizer the cases skip themselves: GCC 12's ASan allocator
// takes no lock across fork(), so a child forked while a parent thread was inside malloc hangs in
// its own first malloc (seen: ASan's SizeClassAllocator64 mutex), whatever the code under test
// does. The dev build (glibc's malloc is fork-safe) runs them.
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
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
using sluice::ResponseCache;
using sluice::TokenBudget;
using sluice::Window;
using sluice_test::Store;
using sluice_test::Value;

namespace {

constexpr absl::Duration kYear = absl::Hours(24 * 366);
constexpr int64_t kHuge = int64_t{1} << 40;  // no limit is reached while the test runs

sluice::ClusterOptions Cluster(std::shared_ptr<sluice::RedisStore> store, const std::string& rule) {
  sluice::ClusterOptions c;
  c.store = std::move(store);
  c.redis_name = rule;
  c.on_failure = FailureMode::kDeny;  // a child that cannot reach Redis is refused: it shows
  return c;
}

struct Objects {
  std::unique_ptr<RateLimiter> strict, leased, host, process;
  std::unique_ptr<ConcurrencyLimiter> cap, process_cap;
  std::unique_ptr<TokenBudget> budget;
  std::unique_ptr<LeakyBucket> bucket;
  std::unique_ptr<ResponseCache> cache;
};

Objects Build(std::shared_ptr<sluice::RedisStore> store, const std::string& region) {
  Objects o;
  RateLimiter::Options rl;
  rl.windows = {Window{kHuge, kYear, 0}};
  rl.cluster = Cluster(store, "fork-strict");
  o.strict = Value(RateLimiter::Create(rl));
  rl.cluster = Cluster(store, "fork-leased");
  rl.cluster.mode = sluice::ClusterMode::kLeased;
  rl.cluster.lease_units = 5;
  o.leased = Value(RateLimiter::Create(rl));
  rl.cluster = {};
  o.process = Value(RateLimiter::Create(rl));
  rl.shared_region = region;
  rl.max_keys = 1 << 14;
  o.host = Value(RateLimiter::Create(rl));
  ConcurrencyLimiter::Options cl;
  cl.max_in_flight = 1 << 20;
  cl.cluster = Cluster(store, "fork-cap");
  o.cap = Value(ConcurrencyLimiter::Create(cl));
  cl.cluster = {};
  o.process_cap = Value(ConcurrencyLimiter::Create(cl));
  TokenBudget::Options tb;
  tb.windows = {Window{kHuge, kYear, 0}};
  tb.cluster = Cluster(store, "fork-tokens");
  o.budget = Value(TokenBudget::Create(tb));
  LeakyBucket::Options lb;
  lb.rate = 1'000'000;
  lb.per = absl::Seconds(1);
  lb.burst = 1 << 30;
  lb.cluster = Cluster(store, "fork-bucket");
  o.bucket = Value(LeakyBucket::Create(lb));
  ResponseCache::Options co;
  co.max_bytes = 64 << 20;
  co.redis = store;
  co.redis_name = "fork-cache";
  o.cache = Value(ResponseCache::Create(co));
  return o;
}

// One use of every object, returning a bit per object that misbehaved (0: all good): 0 strict,
// 1 leased, 2 host, 3 process RateLimiter, 4 cluster and 5 process ConcurrencyLimiter, 6
// TokenBudget, 7 LeakyBucket; 8 the cache key. New keys
// (`tag` differs per call) go through each table's insert path, not only its lock-free lookup.
int UseEverything(Objects& o, const std::string& tag) {
  int bad = 0;
  auto allowed = [](const absl::StatusOr<sluice::Decision>& d) { return d.ok() && d->allowed; };
  if (!allowed(o.strict->TryAcquire("k" + tag))) bad |= 1 << 0;
  if (!allowed(o.leased->TryAcquire("k" + tag))) bad |= 1 << 1;
  if (!allowed(o.host->TryAcquire("k" + tag))) bad |= 1 << 2;
  if (!allowed(o.process->TryAcquire("k" + tag))) bad |= 1 << 3;
  {
    ConcurrencyLimiter::Permit p = o.cap->TryAcquire("k" + tag);
    if (!p) bad |= 1 << 4;
    ConcurrencyLimiter::Permit q = o.process_cap->TryAcquire("k" + tag);
    if (!q) bad |= 1 << 5;
  }
  {
    absl::StatusOr<TokenBudget::Reservation> r = o.budget->TryReserve("k" + tag, 10);
    if (!r.ok() || !*r || !r->Settle(7).ok()) bad |= 1 << 6;
  }
  if (!allowed(o.bucket->TryAcquire("k" + tag))) bad |= 1 << 7;
  // A large answer: the connection thread grows its buffers (realloc) to write and read it.
  absl::StatusOr<sluice::CacheKey> key = sluice::MakeCacheKey("{\"prompt\":\"" + tag + "\"}");
  if (!key.ok()) return bad | 1 << 8;
  // (The admission filter may keep it out of process memory: whether it is kept is not checked.)
  (void)o.cache->Put(*key, {.body = std::string(64 << 10, 'a') + tag});
  (void)o.cache->Get(*key);
  return bad;
}

// What a forked worker does next: drops what it inherited and builds objects of its own, so fork
// hooks are unregistered and registered in the child. (The registry's lock, a recursive mutex
// taken by the forking thread, was "unlocked" in the child by a thread glibc no longer counted as
// its owner: every child hung in its first destructor. Python children collect what they
// inherit, so all of them did.) Returns 0 when the new object works.
int DropAndRebuild(Objects& o) {
  o = Objects{};
  RateLimiter::Options rl;
  rl.windows = {Window{kHuge, kYear, 0}};
  auto own = RateLimiter::Create(rl);
  if (!own.ok()) return 1;
  const absl::StatusOr<sluice::Decision> d = (*own)->TryAcquire("own");
  return d.ok() && d->allowed ? 0 : 1;
}

// Waits for child `pid`, at most `limit`, then kills it: a child that hangs inside fork() itself
// (in a fork hook, before it could set an alarm) is counted as a failure, not waited for forever.
int WaitChild(pid_t pid, std::chrono::seconds limit) {
  const auto deadline = std::chrono::steady_clock::now() + limit;
  int status = 0;
  while (waitpid(pid, &status, WNOHANG) == 0) {
    if (std::chrono::steady_clock::now() > deadline) {
      kill(pid, SIGKILL);
      waitpid(pid, &status, 0);
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  return status;
}

}  // namespace

TEST_CASE("fork stress: children of a busy parent come up healthy and use every object") {
  if (!sluice_test::ForkSafeAllocator()) return;
  LocalRedis redis;
  sluice_test::RegionName region;
  auto store = Store(redis.port(), absl::Milliseconds(50), absl::Seconds(2));
  Objects objects = Build(store, region.name);
  REQUIRE(UseEverything(objects, "warm") == 0);

  std::atomic<bool> stop{false};
  std::atomic<int64_t> thread_uses{0}, thread_bad{0};
  std::atomic<int> thread_bad_bits{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int64_t i = 0; !stop.load(std::memory_order_relaxed); ++i) {
        // Mostly hot keys (lookups), and a new key every few calls (inserts, table growth).
        const std::string tag = (i % 4 == 0) ? std::to_string(t) + "-" + std::to_string(i)
                                             : std::to_string(t) + "-hot";
        if (const int bad = UseEverything(objects, tag); bad != 0) {
          thread_bad.fetch_add(1);
          thread_bad_bits.fetch_or(bad);
        }
        thread_uses.fetch_add(1);
      }
    });
  }
  while (thread_uses.load() < 30) std::this_thread::sleep_for(std::chrono::milliseconds(1));

  constexpr int kForks = 300;
  int healthy = 0;
  std::vector<std::string> failures;
  for (int f = 0; f < kForks; ++f) {
    const pid_t pid = fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
      // A crash is the parent's to report (not Catch's handlers, copied into the child), and a
      // child that hangs (a lock held by a parent thread) is killed, and counted.
      for (int sig : {SIGABRT, SIGSEGV, SIGBUS, SIGILL, SIGFPE}) signal(sig, SIG_DFL);
      alarm(30);
      const int bad = UseEverything(objects, "child-" + std::to_string(getpid()));
      if (bad != 0) _exit(100 + __builtin_ctz(bad));  // 100 + the first object that failed
      _exit(DropAndRebuild(objects) == 0 ? 0 : 99);
    }
    const int status = WaitChild(pid, std::chrono::seconds(30));
    if (WIFEXITED(status) && WEXITSTATUS(status) == 0) {
      ++healthy;
    } else if (failures.size() < 10) {
      failures.push_back(WIFSIGNALED(status)
                             ? "signal " + std::to_string(WTERMSIG(status))
                             : "exit " + std::to_string(WEXITSTATUS(status)));
    }
  }
  stop = true;
  for (auto& t : threads) t.join();
  for (const std::string& f : failures) UNSCOPED_INFO("child failed: " << f);
  CHECK(healthy == kForks);
  INFO("objects that failed in the parent's threads (bits): " << thread_bad_bits.load());
  CHECK(thread_bad == 0);
  CHECK(UseEverything(objects, "parent-after") == 0);  // the parent stayed healthy
  CHECK(objects.strict->failure_mode_decisions() == 0);
}

// The process-scope tables alone, hammered with new keys at full speed (inserts, table growth,
// idle sweeps): a parent thread is inside a shard's mutex or counted as its reader at almost every
// fork. Before the tables had fork hooks, every child hung on the first new key.
TEST_CASE("fork stress: process-scope tables stay usable in children of busy parents") {
  if (!sluice_test::ForkSafeAllocator()) return;
  RateLimiter::Options rl;
  rl.windows = {Window{kHuge, absl::Hours(1), 0}};
  auto limiter = Value(RateLimiter::Create(rl));
  ConcurrencyLimiter::Options cl;
  cl.max_in_flight = 1 << 20;
  auto cap = Value(ConcurrencyLimiter::Create(cl));
  std::atomic<bool> stop{false};
  std::vector<std::thread> threads;
  for (int t = 0; t < 2; ++t) {
    threads.emplace_back([&, t] {
      for (int64_t i = 0; !stop.load(std::memory_order_relaxed); ++i) {
        const std::string key = std::to_string(t) + "-" + std::to_string(i);
        (void)limiter->TryAcquire(key);
        ConcurrencyLimiter::Permit held = cap->TryAcquire(key);
        if (i % 1000 == 0) (void)limiter->DropIdleKeys();
      }
    });
  }
  constexpr int kForks = 300;
  int healthy = 0, failed = 0;
  for (int f = 0; f < kForks && failed < 5; ++f) {  // a hang costs the alarm: stop early
    const pid_t pid = fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
      for (int sig : {SIGABRT, SIGSEGV, SIGBUS, SIGILL, SIGFPE}) signal(sig, SIG_DFL);
      alarm(5);
      int bad = 0;
      for (int j = 0; j < 200; ++j) {
        const std::string key = "child-" + std::to_string(j);
        const absl::StatusOr<sluice::Decision> d = limiter->TryAcquire(key);
        if (!d.ok() || !d->allowed) ++bad;
        if (!cap->TryAcquire(key)) ++bad;
      }
      (void)limiter->DropIdleKeys();
      limiter.reset();  // unregisters its fork hooks in the child
      cap.reset();
      _exit(bad == 0 ? 0 : 1);
    }
    const int status = WaitChild(pid, std::chrono::seconds(30));
    if (WIFEXITED(status) && WEXITSTATUS(status) == 0) {
      ++healthy;
    } else {
      ++failed;
      UNSCOPED_INFO("child failed: " << (WIFSIGNALED(status)
                                             ? "signal " + std::to_string(WTERMSIG(status))
                                             : "exit " + std::to_string(WEXITSTATUS(status))));
    }
  }
  stop = true;
  for (auto& t : threads) t.join();
  CHECK(failed == 0);
  CHECK(healthy == kForks);
}

