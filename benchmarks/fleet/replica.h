// A vLLM-like replica for the fleet simulator: continuous batching, a block-granular prefix (KV)
// cache with LRU eviction, and an iteration time that grows with the batch (the BLIS/Vidur shape:
// base + per running sequence + per uncached prefill token). Single-threaded, simulated time.
#ifndef SLUICE_BENCHMARKS_FLEET_REPLICA_H_
#define SLUICE_BENCHMARKS_FLEET_REPLICA_H_

#include <cstdint>
#include <deque>
#include <limits>
#include <list>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"

namespace fleet {

// The replica's constants, calibrated once so that round robin on the seed workload lands near
// the seed's baseline (TTFT about 240 ms, prefix-cache hit rate about 40%); see BENCHMARKS.md.
// Never tuned per strategy.
struct ReplicaModel {
  double iteration_base_ms = 12;         // scheduling + kernel launch per engine step
  double per_running_seq_ms = 0.9;       // decode cost per sequence in the batch
  double per_prefill_token_ms = 0.17;    // prefill cost per token not in the prefix cache
  int max_running = 64;                  // max-num-seqs
  int64_t kv_capacity_blocks = 4500;     // 16-token blocks: 72k tokens of KV cache
  int tokens_per_block = 16;
  int chars_per_token = 4;
};

struct SimRequest {
  int id = 0;       // index in the order sent
  int session = 0;
  double sent_at = 0;
  std::string prompt_text;    // the serialised conversation (role 0x1F content 0x1E ...)
  std::string output_text;    // what the replica will generate, serialised as the next turn sees it
  int prompt_tokens = 0;
  int output_tokens = 0;
  int replica = -1;
  // Results.
  double first_token_at = -1;
  double done_at = -1;
  int cached_tokens = 0;
  int generated = 0;
};

class Replica {
 public:
  Replica(int index, const ReplicaModel& model) : index_(index), model_(model) {}

  void Enqueue(SimRequest* request, double now);
  // When the running iteration ends (infinity when idle).
  double next_event() const { return busy_ ? iteration_end_ : std::numeric_limits<double>::infinity(); }
  // Ends the running iteration; returns the requests that finished in it.
  std::vector<SimRequest*> FinishIteration();
  // Prometheus text as vLLM exposes it.
  std::string MetricsText() const;
  // Every later iteration takes `factor` times as long (a replica turning slow).
  void set_slowdown(double factor) { slowdown_ = factor; }
  int index() const { return index_; }
  int64_t prompt_tokens() const { return prompt_tokens_; }
  int64_t cached_tokens() const { return cached_tokens_; }

 private:
  void StartIteration(double now);
  std::vector<uint64_t> BlocksOf(const std::string& text) const;
  int CachedBlocks(const std::vector<uint64_t>& blocks);  // touches what it finds
  void Insert(const std::vector<uint64_t>& blocks);

  const int index_;
  const ReplicaModel model_;
  double slowdown_ = 1;
  std::deque<SimRequest*> waiting_;
  std::vector<SimRequest*> running_;
  std::vector<SimRequest*> prefilling_;  // admitted in the current iteration
  bool busy_ = false;
  double iteration_end_ = 0;
  // LRU of block hashes, most recent at the front.
  std::list<uint64_t> lru_;
  absl::flat_hash_map<uint64_t, std::list<uint64_t>::iterator> cache_;
  int64_t prompt_tokens_ = 0, cached_tokens_ = 0;
};

}  // namespace fleet

#endif  // SLUICE_BENCHMARKS_FLEET_REPLICA_H_
