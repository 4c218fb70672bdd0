// Internal: what a cluster-scope object does when Redis cannot answer (ClusterOptions::on_failure).
// The one place the failure mode is read, by the GCRA objects and the ConcurrencyLimiter alike.
//
// Only a transport failure (Redis unreachable, a timeout, an open breaker) is left to the mode.
// An error Redis answered (a configuration error, an impossible reply) is the caller's to
// surface: it is never admitted, never counted as a failure-mode decision.
#ifndef SLUICE_LIB_ADMISSION_FAILURE_MODE_H_
#define SLUICE_LIB_ADMISSION_FAILURE_MODE_H_

#include <algorithm>
#include <atomic>
#include <cstdint>

#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "sluice/decision.h"
#include "sluice/cluster.h"

namespace sluice {
inline namespace v1 {
namespace internal {

class FailureModePolicy {
 public:
  enum class Verdict {
    kError,  // not a transport failure: surface the status
    kAllow,  // admit, unbacked
    kDeny,   // refuse, retry after the reconnect interval
    kLocal,  // decide from this process's share of the limit
  };

  // REQUIRES: cluster.store != nullptr; local_share >= 1 when on_failure is kLocal (see
  // CheckClusterOptions).
  explicit FailureModePolicy(const ClusterOptions& cluster);

  // What to do about `failure` (a non-OK status from a Redis reply). Counts a failure-mode
  // decision unless the verdict is kError. Thread-safe.
  Verdict OnFailure(const absl::Status& failure);

  // How long a refusal for want of Redis (kDeny, or a configuration error) asks the caller to
  // wait: the store's reconnect interval.
  int64_t retry_after_nanos() const { return retry_after_nanos_; }
  // kLocal: this process's share of `amount` (a limit, a burst, a cap), at least 1.
  int64_t LocalShare(int64_t amount) const {
    return std::max<int64_t>(1, amount / std::max<int64_t>(1, local_share_));
  }
  // The decision for a reply that failed with `failure`, for an object whose first window is
  // `limit` per `window_nanos`: `failure` itself when Redis answered (kError, for the caller to
  // surface), else admitted (kAllow), refused until the reconnect interval (kDeny), or what
  // `decide_locally` makes of a decision so initialised (kLocal). Counts as OnFailure does.
  absl::StatusOr<Decision> Decide(const absl::Status& failure, int64_t limit,
                                  int64_t window_nanos,
                                  absl::FunctionRef<void(Decision*)> decide_locally);
  // For APIs that return a Decision: `d` when OK; otherwise a refusal until the reconnect
  // interval, with d's status in `*error`.
  Decision OrRefusal(absl::StatusOr<Decision> d, int64_t limit, int64_t window_nanos,
                     absl::Status* error) const;

  // Decisions the failure mode made (the objects' failure_mode_decisions()).
  int64_t decisions() const { return decisions_.load(std::memory_order_relaxed); }

 private:
  const FailureMode mode_;
  const int64_t local_share_;
  const int64_t retry_after_nanos_;
  std::atomic<int64_t> decisions_{0};
};

}  // namespace internal
}  // namespace v1
}  // namespace sluice

#endif  // SLUICE_LIB_ADMISSION_FAILURE_MODE_H_
