// Shared by the Balancer's host- and cluster-scope tests: conversations as block hashes, a pick
// completed at once, and a barrier on a store's commands.
#ifndef SLUICE_TESTS_CPP_BALANCING_BALANCER_SCOPE_SUPPORT_H_
#define SLUICE_TESTS_CPP_BALANCING_BALANCER_SCOPE_SUPPORT_H_

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "sluice/balancer.h"
#include "sluice/redis_store.h"
#include "test_support.h"

namespace sluice_test {

// Blocks a turn adds: one of the prefix index's groups (PrefixIndex::kDefaultGroupBlocks), so a
// turn's history is whole groups and its next turn matches all of it.
constexpr int kBlocksPerTurn = 4;

// Turn `turn` of conversation `id`: its history so far, kBlocksPerTurn blocks a turn, no block
// shared with another conversation.
inline std::vector<uint64_t> Turn(uint64_t id, int turn) {
  std::vector<uint64_t> blocks;
  for (int i = 0; i < kBlocksPerTurn * (turn + 1); ++i) {
    blocks.push_back(id << 20 | static_cast<uint64_t>(i + 1));
  }
  return blocks;
}

struct Routed {
  std::string endpoint;
  int64_t matched = 0;
};

// Picks `blocks` and completes the pick at once (a success).
inline Routed PickAndComplete(sluice::Balancer& b, const std::vector<uint64_t>& blocks) {
  sluice::Balancer::Pick p = Value(b.PickEndpoint(sluice::PickRequest{.prefix_blocks = blocks}));
  Routed r{p.endpoint_id(), p.matched_blocks()};
  p.Complete({.http_status = 200});
  return r;
}

// A store on a test's own redis-server: reconnecting every 20 ms, its scripts on
// `script_clock` (the Redis server's stand-in; null: the server's own TIME).
inline std::shared_ptr<sluice::RedisStore> TestStore(int port, const sluice::Clock* script_clock,
                                                     absl::Duration command_timeout = absl::Seconds(2)) {
  sluice::RedisOptions r;
  r.port = port;
  r.command_timeout = command_timeout;
  r.reconnect_interval = absl::Milliseconds(20);
  r.script_clock_for_testing = script_clock;
  return Value(sluice::RedisStore::Create(r));
}

// Waits until every command `store` was given so far is answered (and its reply applied): the
// store answers in order, so its own check is a barrier. After an outage the check fails fast
// until the store has reconnected: it asks again, for at most 10 s.
inline void Flush(sluice::RedisStore& store) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  absl::Status s = store.Check(absl::Seconds(5));
  while (!s.ok() && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
    s = store.Check(absl::Seconds(5));
  }
  REQUIRE(s.ok());
}

}  // namespace sluice_test

#endif  // SLUICE_TESTS_CPP_BALANCING_BALANCER_SCOPE_SUPPORT_H_
