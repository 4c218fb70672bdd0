// Internal: the state behind sluice::MetricsRegistry (sluice/metrics.h).

#ifndef SLUICE_LIB_METRICS_METRICS_REGISTRY_IMPL_H_
#define SLUICE_LIB_METRICS_METRICS_REGISTRY_IMPL_H_

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "base/fork_hooks.h"
#include "metrics/metric_names.h"
#include "metrics/metrics_memory.h"
#include "sluice/internal/mutex.h"
#include "sluice/metrics.h"

namespace sluice {
inline namespace v1 {
namespace internal {

class MetricsRegistryImpl {
 public:
  explicit MetricsRegistryImpl(std::shared_ptr<MetricsMemory> memory);

  absl::StatusOr<Counter> GetCounter(std::string_view name, std::string_view help,
                                     const MetricLabels& labels);
  absl::StatusOr<Gauge> GetGauge(std::string_view name, std::string_view help,
                                 const MetricLabels& labels);
  absl::StatusOr<Histogram> GetHistogram(std::string_view name, std::string_view help,
                                         const MetricLabels& labels, std::vector<double> bounds);
  int64_t AddCollector(std::function<void()> fn);
  void RemoveCollector(int64_t id);
  void RunCollectors();
  std::string Render() const;  // metrics_render.cc

  const MetricsMemory& memory() const { return *memory_; }

 private:
  // The values block of a series (nullptr: dropped, the handle is a no-op), after checking and
  // creating its family. A histogram's block is {bound count, bounds' bits, sum's bits,
  // buckets}; a counter's or gauge's one word.
  absl::StatusOr<int64_t*> Series(std::string_view method, std::string_view name,
                                  std::string_view help, MetricType type,
                                  const MetricLabels& labels, const std::vector<double>& bounds);
  absl::Status Family(std::string_view method, std::string_view name, std::string_view help,
                      MetricType type, bool* dropped);
  absl::Status Stuck(std::string_view method, std::string_view what) const;

  const std::shared_ptr<MetricsMemory> memory_;
  Mutex create_mu_;  // one FindOrCreate at a time in this process (metrics_memory.h)
  Mutex collectors_mu_;
  std::map<int64_t, std::function<void()>> collectors_ ABSL_GUARDED_BY(collectors_mu_);
  int64_t next_collector_id_ ABSL_GUARDED_BY(collectors_mu_) = 1;
  ForkHooks fork_hooks_;  // last: its hooks use the mutexes
};

}  // namespace internal
}  // namespace v1
}  // namespace sluice

#endif  // SLUICE_LIB_METRICS_METRICS_REGISTRY_IMPL_H_
