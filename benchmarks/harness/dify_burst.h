// The harness scenario: a Dify-like burst through sluice's admission objects, in virtual time.
//
// Shape (from seed 004: bursts at 5-10x normal traffic, a few apps taking 80% of it):
//   * 4 tenants with 2 apps each; one hot app takes `hot_share` of all requests;
//   * steady traffic at `base_rps`, multiplied by `burst_factor` between burst_start and burst_end;
//   * each request: per-tenant request limit -> per-tenant token budget (reserve the estimate) ->
//     per-app concurrency cap -> provider leaky bucket (shaping) -> the LLM call (virtual) ->
//     settle the real token usage, release the slot.
// In process and host scope time is a ManualClock moved by the event loop, so a 2-minute burst runs
// in well under a second. In cluster scope Redis's own clock decides, so the burst runs in real
// time, compressed `time_scale` times (every rate multiplied, every period and duration divided,
// so the same requests meet the same limits). The cost of every decision is measured on the real
// steady clock.
#ifndef SLUICE_BENCHMARKS_HARNESS_DIFY_BURST_H_
#define SLUICE_BENCHMARKS_HARNESS_DIFY_BURST_H_

#include <cstdint>
#include <string>
#include <vector>

namespace harness {

struct Scenario {
  int tenants = 4;
  int apps_per_tenant = 2;
  double seconds = 120;
  double base_rps = 40;
  double burst_factor = 8;
  double burst_start = 30;
  double burst_end = 60;
  double hot_share = 0.6;  // of all requests, to tenant 0's first app
  uint64_t seed = 1;
  // "process": each object's state is private to this process. "host": the state lives in
  // shared-memory regions (sluice/shared_region.h), as Gunicorn workers would share it.
  // "cluster": the state lives in the Redis at redis_host:redis_port (strict mode).
  std::string scope = "process";
  std::string redis_host = "127.0.0.1";
  int redis_port = 6379;
  // Cluster scope: how many times faster than the scenario's own time the run goes.
  double time_scale = 5;

  // Limits.
  int64_t tenant_rps = 25, tenant_burst = 50, tenant_per_minute = 1200;
  int64_t tenant_tokens_per_minute = 400'000;
  int64_t app_max_in_flight = 64;
  int64_t provider_rps = 50, provider_burst = 20;
  double provider_max_wait = 2.0;
};

// What happened to one tenant's requests.
struct TenantOutcome {
  std::string name;
  int64_t offered = 0;
  int64_t admitted = 0;
  int64_t refused_rate = 0;
  int64_t refused_tokens = 0;
  int64_t refused_concurrency = 0;
  int64_t refused_shaping = 0;
  int64_t tokens_used = 0;
  double shaped_delay_sum = 0;  // seconds, over admitted requests
  double entitled = 0;          // what its own request limits alone admit of its arrivals
};

// Real-time cost of one kind of decision.
struct DecisionCost {
  std::string object;
  std::vector<int64_t> nanos;
};

struct Outcome {
  std::vector<TenantOutcome> tenants;
  std::vector<DecisionCost> costs;
  int64_t peak_offered_per_second = 0;   // arrivals, busiest second
  int64_t peak_provider_per_second = 0;  // departures to the provider after shaping, busiest second
  int64_t timer_overhead_nanos = 0;      // subtracted from every cost sample
  int64_t failure_mode_decisions = 0;    // cluster scope: decided without Redis
  double max_lag_seconds = 0;            // cluster scope: latest an arrival was handled (real s)
};

Outcome RunDifyBurst(const Scenario& scenario);

}  // namespace harness

#endif  // SLUICE_BENCHMARKS_HARNESS_DIFY_BURST_H_
