// Host scope for the prefix strategies (issue 15): the routes a host's balancers share through
// "<shared_region>.routes" (lib/balancing/shared_route_log.h), and the host-wide round-robin
// cursor.
#include <catch2/catch.hpp>

#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <map>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "sluice/balancer.h"
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
using Pick = Balancer::Pick;
using Strategy = Balancer::Strategy;

namespace {

constexpr int kEndpoints = 4;

std::unique_ptr<Balancer> Worker(const sluice::Clock* clock, const std::string& region,
                                 uint64_t seed, Strategy strategy = Strategy::kPrefixAffinity) {
  Balancer::Options o;
  o.strategy = strategy;
  o.shared_region = region;
  o.seed = seed;
  auto b = Value(Balancer::Create(o, clock));
  for (int i = 0; i < kEndpoints; ++i) REQUIRE(b->AddEndpoint({.id = "e" + std::to_string(i)}).ok());
  return b;
}


// Conversations whose turns land on a random worker each (as Gunicorn hands requests out):
// how many of the follow-up turns went to another endpoint than the turn before.
int MovedTurns(std::vector<std::unique_ptr<Balancer>>& workers, int conversations, int turns,
               uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::map<uint64_t, std::string> last;
  int moved = 0;
  for (int turn = 0; turn < turns; ++turn) {
    for (uint64_t c = 1; c <= static_cast<uint64_t>(conversations); ++c) {
      Balancer& b = *workers[rng() % workers.size()];
      const Routed r = PickAndComplete(b, Turn(c, turn));
      if (turn > 0) {
        if (r.endpoint != last[c]) ++moved;
        if (r.matched < 3 * turn) ++moved;  // it must know the whole previous turn
      }
      last[c] = r.endpoint;
    }
  }
  return moved;
}

}  // namespace

TEST_CASE("host scope: a conversation's next turn picked by another worker goes where its last turn went") {
  ManualClock clock;
  for (uint64_t seed : {1u, 2u, 3u}) {
    CAPTURE(seed);
    sluice_test::RegionName region;
    std::vector<std::unique_ptr<Balancer>> workers;
    for (uint64_t w = 0; w < 3; ++w) workers.push_back(Worker(&clock, region.name, seed * 10 + w));
    CHECK(MovedTurns(workers, 24, 5, seed) == 0);

    // The same schedule with a region per worker (each learns alone) moves turns: the check
    // above is not vacuous.
    std::vector<sluice_test::RegionName> own(3);
    std::vector<std::unique_ptr<Balancer>> alone;
    for (uint64_t w = 0; w < 3; ++w) alone.push_back(Worker(&clock, own[w].name, seed * 10 + w));
    CHECK(MovedTurns(alone, 24, 5, seed) > 10);
  }
}

TEST_CASE("host scope: a worker started later relearns the host's recent routes") {
  ManualClock clock;
  sluice_test::RegionName region;
  auto first = Worker(&clock, region.name, 1);
  std::map<uint64_t, std::string> where;
  for (uint64_t c = 1; c <= 20; ++c) where[c] = PickAndComplete(*first, Turn(c, 0)).endpoint;

  auto restarted = Worker(&clock, region.name, 2);
  for (uint64_t c = 1; c <= 20; ++c) {
    CAPTURE(c);
    const Routed r = PickAndComplete(*restarted, Turn(c, 1));
    CHECK(r.endpoint == where[c]);
    CHECK(r.matched == kBlocksPerTurn);
  }
}

TEST_CASE("host scope: a worker a ring behind loses the oldest routes and keeps the newest") {
  ManualClock clock;
  sluice_test::RegionName region;
  auto busy = Worker(&clock, region.name, 1);
  auto idle = Worker(&clock, region.name, 2);
  // 2,000 one-turn conversations: about twice the ring (992 records of 256 blocks).
  std::map<uint64_t, std::string> where;
  for (uint64_t c = 1; c <= 2000; ++c) where[c] = PickAndComplete(*busy, Turn(c, 0)).endpoint;
  // The idle worker catches up, at most 64 routes a pick.
  for (int i = 0; i < 20; ++i) PickAndComplete(*idle, {});
  const Routed newest = PickAndComplete(*idle, Turn(2000, 1));
  CHECK(newest.endpoint == where[2000]);
  CHECK(newest.matched == kBlocksPerTurn);
  CHECK(PickAndComplete(*idle, Turn(1, 1)).matched == 0);  // overwritten before it was read
}

TEST_CASE("host scope: scribbled routes are skipped, never trusted or read out of bounds") {
  ManualClock clock;
  sluice_test::RegionName region;
  auto writer = Worker(&clock, region.name, 1);
  for (uint64_t c = 1; c <= 50; ++c) PickAndComplete(*writer, Turn(c, 0));
  {
    // Random bytes over the ring and its head (past the region's 4 KiB header), as a buggy or
    // hostile process could write.
    const std::string path = "/dev/shm/sluice." + region.name + ".routes";
    const int fd = open(path.c_str(), O_RDWR);
    REQUIRE(fd >= 0);
    std::mt19937_64 rng(7);
    std::vector<uint64_t> junk(50 * 264);
    for (uint64_t& w : junk) w = rng();
    junk[0] = 40;  // a head inside what was written: the records it points at are junk
    REQUIRE(pwrite(fd, junk.data(), junk.size() * 8, 4096) == static_cast<ssize_t>(junk.size() * 8));
    close(fd);
  }
  auto reader = Worker(&clock, region.name, 2);
  for (int i = 0; i < 5; ++i) PickAndComplete(*reader, {});
  for (uint64_t c = 1; c <= 50; ++c) CHECK(PickAndComplete(*reader, Turn(c, 1)).matched == 0);
  // The log goes on working: a route written after the scribbling is shared.
  const Routed fresh = PickAndComplete(*writer, Turn(99, 0));
  CHECK(PickAndComplete(*reader, Turn(99, 1)).endpoint == fresh.endpoint);
}

TEST_CASE("host scope: balancers that hash prompts differently cannot share a region's routes") {
  ManualClock clock;
  sluice_test::RegionName region;
  auto first = Worker(&clock, region.name, 1);
  Balancer::Options o;
  o.strategy = Strategy::kPrefixAffinity;
  o.shared_region = region.name;
  o.prefix_hash.block_chars = 512;
  auto other = Balancer::Create(o, &clock);
  REQUIRE_FALSE(other.ok());
  CHECK(other.status().code() == absl::StatusCode::kFailedPrecondition);
  CHECK_THAT(std::string(other.status().message()),
             Catch::Contains("sluice.Balancer: shared_region: ") &&
                 Catch::Contains(region.name + ".routes") && Catch::Contains("block_chars=512"));
  // Strategies that keep no prefix index open no route log at all.
  o.strategy = Strategy::kLeastRequest;
  CHECK(Balancer::Create(o, &clock).ok());
}

TEST_CASE("host scope: round robin takes the endpoints in turn across the host's workers") {
  ManualClock clock;
  sluice_test::RegionName region;
  auto a = Worker(&clock, region.name, 1, Strategy::kRoundRobin);
  auto b = Worker(&clock, region.name, 2, Strategy::kRoundRobin);
  std::mt19937_64 rng(3);
  std::vector<std::string> order;
  for (int i = 0; i < 4 * kEndpoints; ++i) order.push_back(PickAndComplete(rng() % 2 ? *a : *b, {}).endpoint);
  for (int i = 0; i < 4 * kEndpoints; ++i) {
    CAPTURE(i);
    CHECK(order[i] == "e" + std::to_string(i % kEndpoints));
  }
}

TEST_CASE("host scope fork: a forked worker's routes reach its parent through the balancer it inherited") {
  ManualClock clock;
  sluice_test::RegionName region;
  auto here = Worker(&clock, region.name, 1);
  for (uint64_t c = 1; c <= 8; ++c) PickAndComplete(*here, Turn(c, 0));  // the parent's own
  const pid_t child = fork();
  if (child == 0) {
    // The inherited balancer, in a new process: its routes are not the parent's own.
    bool ok = true;
    for (uint64_t c = 100; c < 108; ++c) {
      auto p = here->PickEndpoint({.prefix_blocks = Turn(c, 0)});
      ok = ok && p.ok();
    }
    _exit(ok ? 0 : 1);
  }
  int status = 0;
  REQUIRE(waitpid(child, &status, 0) == child);
  REQUIRE(WIFEXITED(status));
  REQUIRE(WEXITSTATUS(status) == 0);
  for (uint64_t c = 100; c < 108; ++c) {
    CHECK(PickAndComplete(*here, Turn(c, 1)).matched == kBlocksPerTurn);
  }
}

TEST_CASE("host scope fork: a worker forked while another thread picks shares routes both ways") {
  if (!sluice_test::ForkSafeAllocator()) return;
  ManualClock clock;
  sluice_test::RegionName region;
  auto here = Worker(&clock, region.name, 1);
  std::atomic<bool> stop{false};
  std::thread picker([&] {  // no Catch macros on this thread
    for (uint64_t c = 1000; !stop.load(); ++c) (void)here->PickEndpoint({.prefix_blocks = Turn(c, 0)});
  });
  int to_parent[2], to_child[2];
  REQUIRE(pipe(to_parent) == 0);
  REQUIRE(pipe(to_child) == 0);
  const pid_t child = fork();
  if (child == 0) {
    // A new worker's balancer (the inherited one's lock may be held by the thread that stayed
    // behind). It routes conversation 1, then waits for the parent to route conversation 2.
    auto there = Balancer::Create([&] {
      Balancer::Options o;
      o.strategy = Strategy::kPrefixAffinity;
      o.shared_region = region.name;
      return o;
    }(), &clock);
    bool ok = there.ok();
    for (int i = 0; ok && i < kEndpoints; ++i) ok = (*there)->AddEndpoint({.id = "e" + std::to_string(i)}).ok();
    std::string first;
    if (ok) {
      auto p = (*there)->PickEndpoint({.prefix_blocks = Turn(1, 0)});
      ok = p.ok();
      if (ok) first = p->endpoint_id();
    }
    char byte = 0;
    ok = ok && write(to_parent[1], first.data(), first.size()) == static_cast<ssize_t>(first.size());
    ok = ok && read(to_child[0], &byte, 1) == 1;  // the parent has routed conversation 2
    // Catch up (64 routes a pick; the parent's thread wrote many), then the next turn.
    for (int i = 0; ok && i < 40; ++i) ok = (*there)->PickEndpoint(PickRequest{}).ok();
    auto next = (*there)->PickEndpoint({.prefix_blocks = Turn(2, 1)});
    _exit(ok && next.ok() && next->matched_blocks() == kBlocksPerTurn ? 0 : 1);
  }
  char name[8] = {};
  REQUIRE(read(to_parent[0], name, 2) == 2);
  stop = true;
  picker.join();
  const Routed next = PickAndComplete(*here, Turn(1, 1));
  CHECK(next.endpoint == std::string(name, 2));
  CHECK(next.matched == kBlocksPerTurn);
  PickAndComplete(*here, Turn(2, 0));
  REQUIRE(write(to_child[1], "x", 1) == 1);
  int status = 0;
  REQUIRE(waitpid(child, &status, 0) == child);
  REQUIRE(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == 0);
  for (int fd : {to_parent[0], to_parent[1], to_child[0], to_child[1]}) close(fd);
}

TEST_CASE("host scope: workers picking on threads at once share routes without tearing them") {
  ManualClock clock;
  sluice_test::RegionName region;
  std::vector<std::unique_ptr<Balancer>> workers;
  for (uint64_t w = 0; w < 3; ++w) workers.push_back(Worker(&clock, region.name, w + 1));
  std::vector<std::thread> threads;
  std::atomic<int> failed{0};  // Catch's macros are not for other threads: count, check after
  for (size_t w = 0; w < workers.size(); ++w) {
    threads.emplace_back([&, w] {
      for (uint64_t c = 1; c <= 300; ++c) {
        auto pick = workers[w]->PickEndpoint({.prefix_blocks = Turn(c * 8 + w, static_cast<int>(c % 4))});
        if (!pick.ok()) ++failed;
      }
    });
  }
  for (auto& t : threads) t.join();
  CHECK(failed == 0);
  // Every worker now knows the others' last turns (each conversation was routed by one worker).
  for (size_t w = 0; w < workers.size(); ++w) {
    for (int i = 0; i < 20; ++i) PickAndComplete(*workers[w], {});  // catch up
  }
  const Routed r = PickAndComplete(*workers[0], Turn(300 * 8 + 2, 0));
  CHECK(r.matched == kBlocksPerTurn);
}
