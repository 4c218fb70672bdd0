// Internal: the Governor's Prometheus series (docs/policy.md, "Metrics").
//
// Events the Governor sees itself (decisions, tokens, permits in flight, shaping delays, Admit
// latency, breaker transitions) update handles kept per rule: one atomic add each. Numbers owned
// by the objects (failure-mode decisions, Redis errors, endpoint picks, fallback attempts, cache
// hits and bytes) are pushed by Collect as the change since the last push, so in host scope
// (MetricsSpec::shared_region) every process adds its own share into the host's series and any
// worker renders the whole host's totals. Collect runs on every render and, in host scope, at
// most once a second from Admit, so a worker that is never scraped still reports.
//
// Labels are rule, result, store, upstream, endpoint, chain and target names: bounded by the
// policy. Raw keys label decisions only with MetricsSpec::per_key_labels (and never beyond the
// registry's max_series: a series that does not fit is dropped and counted).
#ifndef SLUICE_LIB_GOVERNOR_GOVERNOR_METRICS_H_
#define SLUICE_LIB_GOVERNOR_GOVERNOR_METRICS_H_

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "base/fork_hooks.h"
#include "sluice/internal/mutex.h"
#include "sluice/metrics.h"
#include "sluice/policy.h"

namespace sluice {
inline namespace v1 {
namespace internal {

struct GovernorSnapshot;

// One rule's handles.
struct RuleSeries {
  Counter allowed, refused, errors;
  Counter tokens_reserved, tokens_settled, tokens_refunded, tokens_over_estimate;
  Gauge in_flight;
  Histogram shaping_delay;
};

class GovernorMetrics {
 public:
  // Errors: the registry's (a host region that does not fit, another max_series).
  static absl::StatusOr<std::unique_ptr<GovernorMetrics>> Create(const MetricsSpec& spec);

  RuleSeries ForRule(std::string_view rule);
  // Decisions by raw key (per_key_labels only; otherwise a no-op handle).
  Counter ForKey(std::string_view rule, std::string_view key, std::string_view result);
  bool per_key_labels() const { return per_key_labels_; }
  // A breaker of chain `chain` moved to `to` ("closed", "open", "half_open").
  Counter BreakerTransitions(std::string_view chain, std::string_view target,
                             std::string_view to);
  const Histogram& admit_seconds() const { return admit_seconds_; }

  // Pushes the objects' own numbers (see the file comment). Thread-safe.
  void Collect(const GovernorSnapshot& snapshot);
  // Collect when a second has passed since the last push (host scope only). Thread-safe, cheap.
  void MaybeCollect(const GovernorSnapshot& snapshot, int64_t now_nanos);
  std::string Render(const GovernorSnapshot& snapshot);

 private:
  explicit GovernorMetrics(std::shared_ptr<MetricsRegistry> registry, bool per_key_labels,
                           bool host);
  void PushCounter(std::string_view name, std::string_view help, const MetricLabels& labels,
                   const void* object, int64_t value);
  void PushGauge(std::string_view name, std::string_view help, const MetricLabels& labels,
                 const void* object, int64_t value);

  const std::shared_ptr<MetricsRegistry> registry_;
  const bool per_key_labels_;
  const bool host_;
  Histogram admit_seconds_;
  std::atomic<int64_t> next_collect_nanos_{0};
  Mutex mutex_;  // Collect's baselines
  absl::flat_hash_map<std::string, int64_t> pushed_;
  // fork(): Collect takes the objects' locks under mutex_, and their prepare hooks take those
  // locks first, so mutex_ cannot be held across a fork. A child forked mid-Collect gets a fresh
  // mutex and fresh baselines (the old map may be half-changed; it is left, not freed), and
  // then pushes the objects' numbers whole once: counted twice in a host region, only then.
  std::atomic<bool> collecting_{false};
  ForkHooks fork_hooks_{nullptr, nullptr, [this] {
                          mutex_.ResetInForkChild();
                          if (collecting_.exchange(false)) {
                            new (&pushed_) absl::flat_hash_map<std::string, int64_t>();
                          }
                        }};
};

}  // namespace internal
}  // namespace v1
}  // namespace sluice

#endif  // SLUICE_LIB_GOVERNOR_GOVERNOR_METRICS_H_
