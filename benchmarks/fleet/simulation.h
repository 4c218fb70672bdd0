// The fleet simulator: GenAI-Perf-shaped multi-turn sessions sent through the real
// sluice::Balancer to simulated replicas (replica.h), in simulated time.
#ifndef SLUICE_BENCHMARKS_FLEET_SIMULATION_H_
#define SLUICE_BENCHMARKS_FLEET_SIMULATION_H_

#include <string>
#include <vector>

#include "replica.h"
#include "sluice/balancer.h"

namespace fleet {

struct Workload {
  std::string name;
  int replicas = 3;
  int concurrency = 20;       // sessions in progress at once (GenAI-Perf --concurrency)
  int sessions = 60;
  int turns = 5;              // per session
  int input_tokens = 200;     // mean new user tokens per turn (uniform +-25%)
  int output_tokens = 800;    // mean generated tokens per turn (uniform +-25%)
  int system_prompt_tokens = 0;  // shared by every session
  int hot_sessions = 0;       // this many sessions run hot_turns turns instead
  int hot_turns = 0;
  int slow_replica = -1;      // this replica turns slow ...
  double slowdown = 1;        // ... by this factor ...
  int slow_after_requests = 0;  // ... once this many requests were sent
  unsigned seed = 1;
};

struct Strategy {
  std::string name;
  sluice::Balancer::Options options;
  bool session_affinity_key = false;  // pass the session id as the affinity key
};

struct Result {
  double ttft_mean_ms = 0, ttft_p50_ms = 0, ttft_p99_ms = 0;
  double rt_mean_s = 0, rt_p99_s = 0;
  double output_tokens_per_s = 0;
  double hit_rate = 0;  // cached prompt tokens / prompt tokens, over the fleet
  int requests = 0;
  double slow_share_after = -1;  // share of requests sent to the slow replica after it slowed
};

// The strategies the simulator compares, each with the library's defaults.
std::vector<Strategy> DefaultStrategies();

Result Simulate(const Workload& workload, const Strategy& strategy,
                const ReplicaModel& model = ReplicaModel());

}  // namespace fleet

#endif  // SLUICE_BENCHMARKS_FLEET_SIMULATION_H_
