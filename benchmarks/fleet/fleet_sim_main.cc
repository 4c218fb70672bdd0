// sluice_fleet_sim: the LLM fleet simulator. Sends GenAI-Perf-shaped multi-turn sessions through
// the real sluice::Balancer, once per strategy, to simulated vLLM-like replicas, and prints one
// table per workload. Deterministic: the same build prints the same numbers.
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "simulation.h"

namespace {

std::vector<fleet::Workload> Workloads() {
  fleet::Workload seed;
  seed.name = "seed workload: 200 in / 800 out tokens per turn, concurrency 20, 5 turns x 60 sessions, 3 replicas";

  fleet::Workload shared = seed;
  shared.name = "shared system prompt: 2,000-token system prompt, 120 users x 2 turns, 100 in / 300 out, concurrency 24";
  shared.system_prompt_tokens = 2000;
  shared.sessions = 120;
  shared.turns = 2;
  shared.input_tokens = 100;
  shared.output_tokens = 300;
  shared.concurrency = 24;

  fleet::Workload skewed = seed;
  skewed.name = "skewed: 4 hot sessions of 20 turns among 60, otherwise the seed workload";
  skewed.hot_sessions = 4;
  skewed.hot_turns = 20;

  fleet::Workload slow = seed;
  slow.name = "slow replica: the seed workload; replica 2 runs 3x slower from the 150th request on";
  slow.slow_replica = 2;
  slow.slowdown = 3;
  slow.slow_after_requests = 150;
  return {seed, shared, skewed, slow};
}

}  // namespace

int main(int argc, char** argv) {
  fleet::ReplicaModel model;
  for (int i = 1; i < argc; ++i) {
    // --kv-blocks=N: another KV-cache size, to see how sensitive the comparison is to it.
    if (std::strncmp(argv[i], "--kv-blocks=", 12) == 0 && std::atoll(argv[i] + 12) > 0) {
      model.kv_capacity_blocks = std::atoll(argv[i] + 12);
    } else {
      std::fprintf(stderr, "usage: %s [--kv-blocks=N]\n", argv[0]);
      return 2;
    }
  }
  std::printf(
      "sluice fleet simulator: the real Balancer routing to simulated vLLM-like replicas\n"
      "replica model: step = %.1f ms + %.2f ms x running + %.2f ms x uncached prefill token; "
      "max %d running; KV cache %lld blocks of %d tokens (LRU)\n",
      model.iteration_base_ms, model.per_running_seq_ms, model.per_prefill_token_ms,
      model.max_running, static_cast<long long>(model.kv_capacity_blocks), model.tokens_per_block);
  for (const fleet::Workload& w : Workloads()) {
    std::printf("\n%s\n", w.name.c_str());
    std::printf("%-22s %9s %9s %9s %9s %9s %10s %8s%s\n", "strategy", "TTFT ms", "p50 ms", "p99 ms",
                "RT s", "p99 RT s", "out tok/s", "hit", w.slow_replica >= 0 ? "  to slow" : "");
    double rr_ttft = 0;
    for (const fleet::Strategy& s : fleet::DefaultStrategies()) {
      const fleet::Result r = fleet::Simulate(w, s, model);
      if (rr_ttft == 0) rr_ttft = r.ttft_mean_ms;
      std::printf("%-22s %9.1f %9.1f %9.1f %9.2f %9.2f %10.1f %7.1f%%", s.name.c_str(),
                  r.ttft_mean_ms, r.ttft_p50_ms, r.ttft_p99_ms, r.rt_mean_s, r.rt_p99_s,
                  r.output_tokens_per_s, 100 * r.hit_rate);
      if (w.slow_replica >= 0) std::printf("  %6.1f%%", 100 * r.slow_share_after);
      std::printf("   (TTFT %.2fx round robin)\n", r.ttft_mean_ms / rr_ttft);
    }
  }
  std::printf(
      "\nTTFT = queueing + the prefill step of the uncached tokens; hit = cached prompt tokens / "
      "prompt tokens over the fleet; \"to slow\": share of the requests sent after the slowdown "
      "that went to the slow replica (1/3 would be blind)\n");
  return 0;
}
