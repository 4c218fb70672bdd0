// The harness's second run: a primary provider fails halfway through, and FallbackPolicy carries
// the traffic to the backup and back, in virtual time (ManualClock, an event queue of upstream
// completions; nothing sleeps).
//
// Shape: requests arrive at `rps` (Poisson) for `seconds`; the primary answers in
// `primary_latency`, the backup in `backup_latency`; between `outage_start` and `outage_end` the
// primary answers every call with a 503 after `failure_latency`. The policy is the default one
// except for the breaker's open time cap (`max_open_time`), so recovery shows within the run.
#ifndef SLUICE_BENCHMARKS_HARNESS_FALLBACK_DRILL_H_
#define SLUICE_BENCHMARKS_HARNESS_FALLBACK_DRILL_H_

#include <cstdint>
#include <ostream>
#include <string>
#include <vector>

namespace harness {

struct DrillScenario {
  double seconds = 120;
  double rps = 50;
  double outage_start = 40;
  double outage_end = 80;
  double primary_latency = 0.8;
  double backup_latency = 1.2;
  double failure_latency = 0.05;
  double max_open_time = 20;
  double bucket = 10;  // seconds per report row
  uint64_t seed = 1;
};

struct DrillBucket {
  int64_t requests = 0, succeeded = 0, failed = 0;
  int64_t primary_calls = 0, backup_calls = 0;
  std::vector<double> latencies;  // seconds, completed requests
};

struct DrillOutcome {
  std::vector<DrillBucket> buckets;
  std::vector<std::string> transitions;  // "t=40.1 s primary closed -> open (consecutive failures)"
  double recovered_at = -1;  // first time after the outage the primary's breaker closed
  int64_t requests = 0, succeeded = 0, upstream_calls = 0;
};

DrillOutcome RunFallbackDrill(const DrillScenario& scenario);
void PrintDrillReport(const DrillScenario& scenario, DrillOutcome& outcome, std::ostream& os);

}  // namespace harness

#endif  // SLUICE_BENCHMARKS_HARNESS_FALLBACK_DRILL_H_
