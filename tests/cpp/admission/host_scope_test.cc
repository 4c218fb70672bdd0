// Host scope: several processes share one limit through a shared-memory region.
//
// Children are forked; each either inherits the parent's object (a preforked Gunicorn worker) or
// opens the region by name itself (an unrelated process). They report through an anonymous shared
// page and leave with _exit, so Catch2 never runs in a child.
#include <signal.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstring>
#include <fstream>
#include <functional>
#include <string>
#include <vector>

#include <catch2/catch.hpp>

#include "sluice/sluice.hpp"
#include "test_support.h"

using sluice::RateLimiter;
using sluice::Window;
using sluice_test::ErrorOf;
using sluice_test::RegionName;
using sluice_test::Value;

namespace {

// Counters visible to forked children.
struct SharedCounters {
  static constexpr int kSlots = 16;
  std::atomic<int64_t>* slots;
  SharedCounters() {
    void* p = mmap(nullptr, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    REQUIRE(p != MAP_FAILED);
    slots = new (p) std::atomic<int64_t>[kSlots]();
  }
  ~SharedCounters() { munmap(slots, 4096); }
  int64_t Sum() const {
    int64_t sum = 0;
    for (int i = 0; i < kSlots; ++i) sum += slots[i].load();
    return sum;
  }
};

// Forks `n` children running `body(i)`; returns their pids. A child's exit code is its result.
std::vector<pid_t> Fork(int n, const std::function<int(int)>& body) {
  std::vector<pid_t> pids;
  for (int i = 0; i < n; ++i) {
    const pid_t pid = fork();
    REQUIRE(pid >= 0);
    if (pid == 0) _exit(body(i));
    pids.push_back(pid);
  }
  return pids;
}

// Waits for every child; returns how many exited 0.
int WaitAll(const std::vector<pid_t>& pids) {
  int ok = 0;
  for (pid_t pid : pids) {
    int status = 0;
    waitpid(pid, &status, 0);
    if (WIFEXITED(status) && WEXITSTATUS(status) == 0) ++ok;
  }
  return ok;
}

// A 366-day window: real time passes while processes fork and run (slowly under sanitizers), and
// nothing may refill meanwhile, so the exact count is known.
RateLimiter::Options NoRefillOptions(const std::string& region, int64_t limit,
                                     int64_t max_keys = 64) {
  RateLimiter::Options o;
  o.windows = {{limit, absl::Hours(24 * 366), 0}};
  o.max_keys = max_keys;
  o.shared_region = region;
  return o;
}

}  // namespace

TEST_CASE("processes that open a region by name share one limit exactly") {
  RegionName region;
  SharedCounters admitted;
  auto parent = Value(RateLimiter::Create(NoRefillOptions(region.name, 1000)));  // creates it
  auto children = Fork(4, [&](int i) {
    auto limiter = RateLimiter::Create(NoRefillOptions(region.name, 1000));
    if (!limiter.ok()) return 2;
    for (int k = 0; k < 1000; ++k) {
      if ((*limiter)->Allow("tenant-1")) admitted.slots[i]++;
    }
    return 0;
  });
  CHECK(WaitAll(children) == 4);
  CHECK(admitted.Sum() == 1000);  // 4,000 attempts, one limit of 1,000: not 4,000
  CHECK_FALSE(parent->Allow("tenant-1"));
  CHECK(parent->Allow("tenant-2"));
  CHECK(parent->key_count() == 2);
}

TEST_CASE("forked workers inherit the region and share one limit with the parent") {
  RegionName region;
  SharedCounters admitted;
  auto limiter = Value(RateLimiter::Create(NoRefillOptions(region.name, 500)));
  int64_t parent_admitted = 0;
  for (int k = 0; k < 100; ++k) parent_admitted += limiter->Allow("k") ? 1 : 0;
  auto children = Fork(3, [&](int i) {
    for (int k = 0; k < 500; ++k) {
      if (limiter->Allow("k")) admitted.slots[i]++;
    }
    return 0;
  });
  CHECK(WaitAll(children) == 3);
  CHECK(parent_admitted + admitted.Sum() == 500);
}

TEST_CASE("a process killed mid-run leaves the region usable and exact") {
  RegionName region;
  SharedCounters admitted;
  SharedCounters attempts;
  auto limiter = Value(RateLimiter::Create(NoRefillOptions(region.name, 200000)));
  // Child 0 is the victim: it keeps deciding until it is killed, so it cannot finish first
  // however the processes are scheduled. The others stop once the limit is spent.
  auto children = Fork(3, [&](int i) {
    auto mine = RateLimiter::Create(NoRefillOptions(region.name, 200000));
    if (!mine.ok()) return 2;
    while (true) {
      attempts.slots[i]++;
      if ((*mine)->Allow("hot")) {
        admitted.slots[i]++;
      } else if (i != 0) {
        return 0;  // the limit is spent
      }
    }
  });
  while (attempts.slots[0].load() < 20000) sched_yield();  // let it get going
  kill(children[0], SIGKILL);                               // at whatever instruction it is
  const int finished = WaitAll(children);
  CHECK(finished == 2);
  // Every admission was counted except at most the one the killed child made just before dying.
  CHECK(admitted.Sum() <= 200000);
  CHECK(admitted.Sum() >= 200000 - 1);
  CHECK_FALSE(limiter->Allow("hot"));
  CHECK(limiter->Peek("hot").remaining == 0);
  CHECK(limiter->Allow("another key"));  // nothing was left locked
}

TEST_CASE("leaky bucket and token budget share their state across processes") {
  RegionName bucket_region, budget_region;
  sluice::LeakyBucket::Options lo;
  lo.rate = 10;
  lo.max_wait = absl::Hours(1);
  lo.shared_region = bucket_region.name;
  auto bucket = Value(sluice::LeakyBucket::Create(lo));
  sluice::TokenBudget::Options to;
  to.windows = {{10000, absl::Hours(24 * 366), 0}};  // no refill while the test runs
  to.shared_region = budget_region.name;
  auto budget = Value(sluice::TokenBudget::Create(to));
  const int64_t start = sluice::Clock::Steady()->NowNanos();
  auto children = Fork(2, [&](int) {
    auto b = sluice::LeakyBucket::Create(lo);
    auto t = sluice::TokenBudget::Create(to);
    if (!b.ok() || !t.ok()) return 2;
    for (int k = 0; k < 10; ++k) {
      if (!(*b)->TryAcquire("provider").ok()) return 3;
      auto r = (*t)->TryReserve("tenant", 100);
      if (!r.ok() || !*r || !r->Settle(150).ok()) return 4;
    }
    return 0;
  });
  CHECK(WaitAll(children) == 2);
  // 20 departures were booked one per 100 ms from the first booking (after `start`), so the next
  // slot departs 2 s after it: however slowly this ran, no later than `now + delay` allows.
  const sluice::Decision next = Value(bucket->TryAcquire("provider"));
  const int64_t after = sluice::Clock::Steady()->NowNanos();
  CHECK(next.delay_nanos <= 2'000'000'000);
  CHECK(after + next.delay_nanos >= start + 2'000'000'000);
  CHECK(budget->Peek("tenant").remaining == 10000 - 20 * 150);  // every settle, from both
}

TEST_CASE("a region opened with another configuration is refused, naming both") {
  RegionName region;
  auto first = Value(RateLimiter::Create(NoRefillOptions(region.name, 1000)));
  const std::string error = ErrorOf(RateLimiter::Create(NoRefillOptions(region.name, 999)));
  CHECK(error.find("holds a sluice.RateLimiter with windows=[1000 per 31622400000000000ns") !=
        std::string::npos);
  CHECK(error.find("asked for a sluice.RateLimiter with windows=[999 per") != std::string::npos);
  sluice::TokenBudget::Options to;
  to.windows = {{1000, absl::Hours(24 * 366), 0}};
  to.max_keys = 64;
  to.shared_region = region.name;
  CHECK(ErrorOf(sluice::TokenBudget::Create(to)).find("holds a sluice.RateLimiter") !=
        std::string::npos);
}

TEST_CASE("a region made by an incompatible layout version is refused, not misread") {
  RegionName region;
  { auto first = Value(RateLimiter::Create(NoRefillOptions(region.name, 10))); }
  {
    std::fstream file("/dev/shm/sluice." + region.name,
                      std::ios::in | std::ios::out | std::ios::binary);
    REQUIRE(file.is_open());
    file.seekp(8);  // the layout version follows the 8-byte magic
    const uint32_t future = 99;
    file.write(reinterpret_cast<const char*>(&future), sizeof(future));
  }
  const std::string error = ErrorOf(RateLimiter::Create(NoRefillOptions(region.name, 10)));
  CHECK(error.find("incompatible version of sluice (layout 99, this is layout 1)") !=
        std::string::npos);
}

TEST_CASE("a full region refuses new keys with a clear error, and known keys keep working") {
  RegionName region;
  auto limiter = Value(RateLimiter::Create(NoRefillOptions(region.name, 10, /*max_keys=*/5)));
  for (int k = 0; k < 5; ++k) REQUIRE(limiter->Allow("key-" + std::to_string(k)));
  auto full = limiter->TryAcquire("key-5");
  REQUIRE_FALSE(full.ok());
  CHECK(absl::IsResourceExhausted(full.status()));
  CHECK(std::string(full.status().message()).find("is full: 5 keys claimed") != std::string::npos);
  CHECK(limiter->Allow("key-3"));
}

TEST_CASE("bad region names are invalid arguments") {
  for (const char* bad : {"has/slash", "has space", "..", ""}) {
    RateLimiter::Options o = NoRefillOptions(bad, 10);
    if (std::string(bad).empty()) continue;  // empty means process scope
    CHECK(ErrorOf(RateLimiter::Create(o)).find("shared_region must be 1 to 200 characters") !=
          std::string::npos);
  }
  CHECK(absl::IsNotFound(sluice::RemoveSharedRegion("never-created-" + std::to_string(getpid()))));
}

namespace {

sluice::ConcurrencyLimiter::Options CapOptions(const std::string& region, int64_t max_in_flight) {
  sluice::ConcurrencyLimiter::Options o;
  o.max_in_flight = max_in_flight;
  o.lease = absl::Seconds(30);
  o.max_keys = 16;
  o.shared_region = region;
  return o;
}

// A ManualClock every forked process sees: time moves for all of them at once.
sluice::ManualClock* SharedManualClock() {
  void* p = mmap(nullptr, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  REQUIRE(p != MAP_FAILED);
  return new (p) sluice::ManualClock(1'000'000'000);
}

}  // namespace

TEST_CASE("the concurrency cap is shared by the processes of a host") {
  RegionName region;
  SharedCounters granted, reported, release;
  auto parent = Value(sluice::ConcurrencyLimiter::Create(CapOptions(region.name, 3)));
  auto children = Fork(5, [&](int i) {
    auto cap = sluice::ConcurrencyLimiter::Create(CapOptions(region.name, 3));
    if (!cap.ok()) return 2;
    sluice::ConcurrencyLimiter::Permit permit = (*cap)->TryAcquire("app");
    if (permit) granted.slots[i] = 1;
    reported.slots[i] = 1;
    while (release.slots[0].load() == 0) sched_yield();  // hold it until the parent has looked
    return 0;
  });
  while (reported.Sum() < 5) sched_yield();
  CHECK(granted.Sum() == 3);  // five processes asked at once; the cap is 3
  CHECK(parent->InFlight("app") == 3);
  CHECK_FALSE(parent->TryAcquire("app"));
  release.slots[0] = 1;
  CHECK(WaitAll(children) == 5);
  CHECK(parent->InFlight("app") == 0);  // permits released when the children's objects died
  CHECK(parent->TryAcquire("app"));
}

TEST_CASE("a holder killed with SIGKILL loses its slot when its lease ends") {
  RegionName region;
  sluice::ManualClock* clock = SharedManualClock();
  SharedCounters holding;
  auto parent = Value(sluice::ConcurrencyLimiter::Create(CapOptions(region.name, 1), clock));
  auto children = Fork(1, [&](int) {
    auto cap = sluice::ConcurrencyLimiter::Create(CapOptions(region.name, 1), clock);
    if (!cap.ok()) return 2;
    sluice::ConcurrencyLimiter::Permit permit = (*cap)->TryAcquire("app");
    holding.slots[0] = permit ? 1 : -1;
    for (;;) pause();  // holds the permit until killed
  });
  while (holding.slots[0].load() == 0) sched_yield();
  REQUIRE(holding.slots[0].load() == 1);
  kill(children[0], SIGKILL);
  WaitAll(children);
  CHECK_FALSE(parent->TryAcquire("app"));  // the dead process's lease is still running
  clock->AdvanceNanos(30'000'000'000 - 1);
  CHECK_FALSE(parent->TryAcquire("app"));
  clock->AdvanceNanos(1);
  CHECK(parent->InFlight("app") == 0);
  sluice::ConcurrencyLimiter::Permit taken_over = parent->TryAcquire("app");
  CHECK(taken_over);  // nothing leaked: the expired lease was taken over
  CHECK(taken_over.Release().ok());
}

TEST_CASE("host-scope permits: renew, release after reclaim, and configuration checks") {
  RegionName region;
  sluice::ManualClock clock(0);
  auto cap = Value(sluice::ConcurrencyLimiter::Create(CapOptions(region.name, 1), &clock));
  sluice::ConcurrencyLimiter::Permit run = cap->TryAcquire("k");
  REQUIRE(run);
  clock.AdvanceNanos(20'000'000'000);
  REQUIRE(run.Renew().ok());  // now ends at 50 s
  clock.AdvanceNanos(20'000'000'000);
  CHECK_FALSE(cap->TryAcquire("k"));  // renewed: still held at 40 s
  clock.AdvanceNanos(11'000'000'000);
  sluice::ConcurrencyLimiter::Permit next = cap->TryAcquire("k");
  CHECK(next);
  CHECK(absl::IsFailedPrecondition(run.Release()));  // it overran; its slot went to `next`
  CHECK(cap->InFlight("k") == 1);
  clock.AdvanceNanos(31'000'000'000);
  CHECK(cap->ReclaimExpired() == 1);
  CHECK(ErrorOf(sluice::ConcurrencyLimiter::Create(CapOptions(region.name, 2)))
            .find("holds a sluice.ConcurrencyLimiter with max_in_flight=1") != std::string::npos);
  auto too_many = CapOptions(region.name + "-big", 5000);
  CHECK(ErrorOf(sluice::ConcurrencyLimiter::Create(too_many))
            .find("max_in_flight must be 1 to 4096 with a shared_region, got 5000") !=
        std::string::npos);
}
