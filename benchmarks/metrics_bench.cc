// Google Benchmark: the cost of updating a MetricsRegistry series, process scope and host scope
// (the series in a /dev/shm region). Run: build/dev/benchmarks/metrics_bench
//
// BM_CounterAdd/<scope>:     Counter::Add on one series (one relaxed atomic add); with 2 threads
//                            both add to the same series (one cache line, contended).
// BM_HistogramObserve/<scope>: Histogram::Observe with the default 16 bounds (a binary search,
//                            a bucket add and a compare-and-swap of the sum).
// BM_GetCounter:             finding an existing series by name and labels (hash and probe):
//                            why handles are kept rather than looked up per event.
// BM_Render/<series>:        Render of a registry holding that many counters.
#include <benchmark/benchmark.h>

#include <unistd.h>

#include <memory>
#include <string>

#include "sluice/metrics.h"
#include "sluice/shared_region.h"

namespace {

// One registry per scope for the whole run; the host region is removed at exit.
std::shared_ptr<sluice::MetricsRegistry> Registry(bool host) {
  static const std::string region = "metrics-bench-" + std::to_string(getpid());
  static std::shared_ptr<sluice::MetricsRegistry> registries[2];
  auto& registry = registries[host ? 1 : 0];
  if (registry == nullptr) {
    sluice::MetricsRegistry::Options options;
    if (host) {
      options.shared_region = region;
      std::atexit([] { (void)sluice::RemoveSharedRegion(region); });
    }
    registry = sluice::MetricsRegistry::Create(options).value();
  }
  return registry;
}

void BM_CounterAdd(benchmark::State& state) {
  static sluice::Counter counters[2];
  const bool host = state.range(0) == 1;
  if (state.thread_index() == 0) {
    counters[host] = Registry(host)
                         ->GetCounter("bench_requests_total", "Requests.", {{"route", "/chat"}})
                         .value();
  }
  for (auto _ : state) counters[host].Add();
  state.SetLabel(host ? "host" : "process");
}
BENCHMARK(BM_CounterAdd)->Arg(0)->Arg(1)->Threads(1)->Threads(2);

void BM_HistogramObserve(benchmark::State& state) {
  const bool host = state.range(0) == 1;
  sluice::Histogram h =
      Registry(host)->GetHistogram("bench_decision_seconds", "Decisions.", {}).value();
  double v = 1e-7;
  for (auto _ : state) {
    h.Observe(v);
    v = v < 1e-2 ? v * 1.7 : 1e-7;
  }
  state.SetLabel(host ? "host" : "process");
}
BENCHMARK(BM_HistogramObserve)->Arg(0)->Arg(1);

void BM_GetCounter(benchmark::State& state) {
  auto registry = Registry(false);
  const sluice::MetricLabels labels = {{"route", "/chat"}, {"tenant", "t-42"}};
  for (auto _ : state) {
    benchmark::DoNotOptimize(registry->GetCounter("bench_lookup_total", "Lookups.", labels));
  }
}
BENCHMARK(BM_GetCounter);

void BM_Render(benchmark::State& state) {
  sluice::MetricsRegistry::Options options;
  auto registry = sluice::MetricsRegistry::Create(options).value();
  for (int64_t i = 0; i < state.range(0); ++i) {
    registry->GetCounter("bench_series_total", "Series.", {{"i", std::to_string(i)}})->Add(i);
  }
  for (auto _ : state) benchmark::DoNotOptimize(registry->Render());
}
BENCHMARK(BM_Render)->Arg(100)->Arg(1000);

}  // namespace

BENCHMARK_MAIN();
