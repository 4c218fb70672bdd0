// The harness's third run: repeated questions through ResponseCache in virtual time. Users ask
// FAQ-style questions (Zipf over `questions`) mixed with one-off ones; each upstream answer takes
// `upstream_latency`. The report shows hits, identical concurrent misses merged into one upstream
// call (single flight), and the upstream calls saved.
#ifndef SLUICE_BENCHMARKS_HARNESS_CACHE_DRILL_H_
#define SLUICE_BENCHMARKS_HARNESS_CACHE_DRILL_H_

#include <cstdint>
#include <ostream>

namespace harness {

struct CacheScenario {
  double seconds = 120;
  double rps = 50;
  int questions = 2000;       // the FAQ
  double zipf = 0.99;
  double one_off_share = 0.3;  // questions asked once
  double upstream_latency = 2.0;
  int64_t max_bytes = int64_t{8} << 20;
  int answer_bytes = 2048;
  uint64_t seed = 1;
};

struct CacheDrillOutcome {
  int64_t requests = 0, hits = 0, merged = 0, upstream_calls = 0;
  double p50_latency = 0, mean_latency = 0;
  int64_t bytes = 0, evictions = 0, rejected = 0;
};

CacheDrillOutcome RunCacheDrill(const CacheScenario& scenario);
void PrintCacheDrillReport(const CacheScenario& scenario, const CacheDrillOutcome& outcome,
                           std::ostream& os);

}  // namespace harness

#endif  // SLUICE_BENCHMARKS_HARNESS_CACHE_DRILL_H_
