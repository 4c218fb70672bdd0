// One endpoint's live state: shared by the Balancer and the Picks made of it, so a Pick can be
// completed after its endpoint was removed (or the Balancer destroyed).
#ifndef SLUICE_LIB_BALANCER_ENDPOINT_H_
#define SLUICE_LIB_BALANCER_ENDPOINT_H_

#include <atomic>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "absl/base/thread_annotations.h"
#include "balancing/cluster_holds.h"
#include "balancing/endpoint_holds.h"
#include "sluice/internal/mutex.h"
#include "sluice/balancer.h"
#include "sluice/provider_error.h"

namespace sluice {
inline namespace v1 {
namespace internal {

// The options a completion needs, shared by every endpoint of one balancer.
struct CompletionPolicy {
  const Clock* clock = nullptr;
  double ewma_weight = 0.2;
  int64_t failures_before_cooldown = 1;
  absl::Duration cooldown_rate_limited, cooldown_auth, cooldown_connection, cooldown_timeout,
      cooldown_server;
  int64_t outlier_base_ejection_nanos = 0;
  int64_t outlier_consecutive_failures = 0;  // 0: no outlier ejection
  // Bumped whenever an endpoint reaches outlier_consecutive_failures, so the pick filter runs
  // its ejection pass only when there may be an outlier (the pass clears it when none is left).
  mutable std::atomic<int64_t> outlier_hint{0};
};

struct EndpointState {
  explicit EndpointState(std::shared_ptr<const CompletionPolicy> p) : policy(std::move(p)) {}

  // Folds a completed request into the counters, averages and cooldown.
  void Complete(const AttemptOutcome& outcome);
  EndpointStats Stats() const;

  // The holds that keep it out of rotation, host-wide with a shared region (see
  // endpoint_holds.h), else this process's: until these times on the balancer's clock.
  int64_t CooldownUntil() const;
  int64_t EjectedUntil() const;
  // Raise a hold to `until` unless it already lasts as long (the later end wins).
  void ExtendCooldown(int64_t until, Failure reason);
  void ExtendEjection(int64_t until);
  // Clears the cooldown and the ejection (here and, with a shared region, host-wide), and the
  // failure runs that lead to them; the ejection count stays, so a relapse is ejected longer.
  void Restore(int64_t now);
  void ExtendCooldownLocked(int64_t until, Failure reason) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu);

  // Cluster scope: what Redis holds for this endpoint, on the balancer's clock (0: nothing).
  struct Holds {
    int64_t cooldown_until = 0;
    Failure cooldown_reason = Failure::kNone;
    int64_t ejected_until = 0;
  };
  // Takes Redis's holds (see cluster_holds.h): `exact`, they replace this endpoint's (a restore
  // elsewhere ends them here); otherwise they only lengthen them. Sends nothing back.
  void MirrorHolds(const Holds& holds, bool exact, int64_t now);

  const std::shared_ptr<const CompletionPolicy> policy;
  // Host scope: the shared holds. Set before the state is published, then constant.
  std::optional<SharedHolds> host;
  // Cluster scope: where holds set here are sent, and this endpoint's field there. Set before
  // the state is published, then constant.
  std::shared_ptr<ClusterHolds> cluster;
  std::string cluster_field;
  // Cluster scope: other hosts' picks in flight here, as last read (cluster_loads.h). Set
  // before the state is published, then constant (the count itself changes).
  std::shared_ptr<std::atomic<int64_t>> others_in_flight;
  std::atomic<int64_t> in_flight{0};
  // Prompt tokens of this process's picks in flight here (prefix strategies): the prefill work
  // queued, which breaks ties between equally loaded endpoints.
  std::atomic<int64_t> in_flight_tokens{0};
  std::atomic<int64_t> picks{0};
  std::atomic<int64_t> cooldown_until{0};  // process scope: nanoseconds on the balancer's clock
  // Outlier ejection: failures in a row that count (5xx, connection, timeout); times ejected
  // (set by the pick filter, under the Balancer's mutex); and this process's ejection end, which
  // also marks where the healthy stretch that takes one off times_ejected starts (host scope
  // filters on the shared end, EjectedUntil()).
  std::atomic<int64_t> outlier_failures{0};
  std::atomic<int64_t> ejected_until{0};
  std::atomic<int64_t> times_ejected{0};

  // Guarded by the Balancer's mutex (read by Stats() under it).
  std::shared_ptr<const EndpointSpec> spec;
  int slot = -1;              // prefix-index bit, -1 without one
  uint64_t route_key = 0;     // host scope: its id's key in the shared route log
  int64_t swrr_current = 0;   // smooth weighted round robin's running weight
  uint64_t candidate_epoch = 0;  // == the core's epoch while a candidate of the current pick
  size_t candidate_index = 0;    // its index among the candidates then

  mutable Mutex mu;
  int64_t completions ABSL_GUARDED_BY(mu) = 0;
  int64_t errors ABSL_GUARDED_BY(mu) = 0;
  double ewma_latency_s ABSL_GUARDED_BY(mu) = 0;
  double ewma_ttft_s ABSL_GUARDED_BY(mu) = 0;
  double ewma_error_rate ABSL_GUARDED_BY(mu) = 0;
  Failure failing_class ABSL_GUARDED_BY(mu) = Failure::kNone;
  int64_t consecutive_failures ABSL_GUARDED_BY(mu) = 0;
  Failure cooldown_reason ABSL_GUARDED_BY(mu) = Failure::kNone;  // process scope
  Failure last_failure ABSL_GUARDED_BY(mu) = Failure::kNone;
  int64_t last_failure_at ABSL_GUARDED_BY(mu) = 0;
  std::optional<EngineMetrics> metrics ABSL_GUARDED_BY(mu);
  int64_t metrics_at ABSL_GUARDED_BY(mu) = 0;
  int64_t in_flight_at_metrics ABSL_GUARDED_BY(mu) = 0;
};

// The failure class of a completed pick: its `failure` when set; else Classify's when it reports
// a transport error or an HTTP error status; else none (a status of 0 alone reports no failure).
Failure ClassifyCompletion(const AttemptOutcome& outcome);

}  // namespace internal
}  // namespace v1
}  // namespace sluice

#endif  // SLUICE_LIB_BALANCER_ENDPOINT_H_
