// -----------------------------------------------------------------------------
// File: sluice/engine_metrics.h
// -----------------------------------------------------------------------------
//
// The load of a vLLM or SGLang replica, read from its Prometheus text exposition (`/metrics`).
// sluice does not scrape: the caller fetches the text on its own schedule and hands it to
// `Balancer::UpdateMetrics` (or to `ParseEngineMetrics` directly).
//
// Recognised series (every label set of a series is summed; usage takes the largest):
//
//   waiting   vllm:num_requests_waiting     sglang:num_queue_reqs
//   running   vllm:num_requests_running     sglang:num_running_reqs
//   kv_usage  vllm:kv_cache_usage_perc      sglang:token_usage
//             vllm:gpu_cache_usage_perc (older vLLM; used only when the newer name is absent)
//
// Other series, `# HELP`/`# TYPE` lines and blank lines are skipped. A line that does not follow
// the text format (name, optional `{labels}`, value, optional timestamp) is an error naming its
// line number, whatever its series, since a scrape that is cut or garbled should not be trusted
// in part. Values of recognised series must be finite and >= 0; usage is clamped to [0, 1];
// waiting and running saturate at `kEngineMetricsMaxRequests` (each sample, and each sum), so
// that the parsed values, and what the balancer computes from them, stay finite whatever the
// scrape says (two samples of 1e308 once summed to +inf).
//
// Example:
//
//   absl::StatusOr<sluice::EngineMetrics> m = sluice::ParseEngineMetrics(scrape_body);
//   if (m.ok() && m->waiting) Log("queue", *m->waiting);
//
// Thread-safety: a free function without shared state.

#ifndef SLUICE_ENGINE_METRICS_H_
#define SLUICE_ENGINE_METRICS_H_

#include <optional>
#include <string_view>

#include "absl/status/statusor.h"

namespace sluice {
inline namespace v1 {

// The most requests `waiting` or `running` reports: 1e9, far beyond any engine's queue, small
// enough that sums and differences of such values are exact to well below one request.
inline constexpr double kEngineMetricsMaxRequests = 1e9;

struct EngineMetrics {
  std::optional<double> waiting;   // requests queued in the engine
  std::optional<double> running;   // requests in the running batch
  std::optional<double> kv_usage;  // share of the KV cache in use, 0..1
};

// Parses Prometheus text exposition format 0.0.4. Errors: InvalidArgument naming the line.
absl::StatusOr<EngineMetrics> ParseEngineMetrics(std::string_view text);

}  // namespace v1
}  // namespace sluice

#endif  // SLUICE_ENGINE_METRICS_H_
