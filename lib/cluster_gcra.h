// Internal: strict cluster-scope GCRA (RateLimiter in Redis): one EVALSHA per decision.
#ifndef SLUICE_LIB_CLUSTER_GCRA_H_
#define SLUICE_LIB_CLUSTER_GCRA_H_

#include <atomic>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "gcra.h"
#include "sluice/cluster.h"
#include "sluice/decision.h"
#include "sluice/redis_store.h"
#include "sluice/window.h"

namespace sluice {
inline namespace v1 {
namespace internal {

class ClusterGcra {
 public:
  // Validates the cluster options and windows (periods must be whole microseconds).
  static absl::StatusOr<std::unique_ptr<ClusterGcra>> Create(absl::string_view object,
                                                             const ClusterOptions& cluster,
                                                             const std::vector<Window>& windows,
                                                             const Clock* clock);

  // Starts a decision; never blocks.
  std::shared_ptr<PendingReply> Start(const KeyDigest& d, int64_t cost, bool want_fd);
  // Leased mode: asks for up to `want` units (charged now in Redis), giving back `give_back`
  // units of an expired lease. The reply's first integer is the number granted.
  std::shared_ptr<PendingReply> StartLease(const KeyDigest& d, int64_t want, int64_t give_back,
                                           bool want_fd = false);
  // Turns the script's reply into a Decision; on a failure, applies the failure mode.
  Decision Finish(const KeyDigest& d, int64_t cost,
                  const absl::StatusOr<std::vector<int64_t>>& reply);
  // LeakyBucket (one window): books `cost` unless its wait would exceed `max_wait_nanos`.
  // REQUIRES: max_wait_nanos a whole number of microseconds.
  std::shared_ptr<PendingReply> StartQueue(const KeyDigest& d, int64_t cost,
                                           int64_t max_wait_nanos, bool want_fd);
  Decision FinishQueue(const KeyDigest& d, int64_t cost, int64_t max_wait_nanos,
                       const absl::StatusOr<std::vector<int64_t>>& reply);
  // TokenBudget: charges `delta` (a refund when negative) to every window, debt allowed.
  std::shared_ptr<PendingReply> StartAdjust(const KeyDigest& d, int64_t delta, bool want_fd);
  Decision FinishAdjust(const KeyDigest& d, int64_t delta,
                        const absl::StatusOr<std::vector<int64_t>>& reply);
  // How long a caller waits for a reply before applying the failure mode.
  absl::Duration reply_timeout() const { return reply_timeout_; }
  int64_t failure_decisions() const { return failure_decisions_.load(); }

 private:
  ClusterGcra() = default;
  std::vector<std::string> Keys(const KeyDigest& d) const;
  std::vector<std::string> Args(int64_t first) const;
  // Reads a script reply of `size` integers; false if it is a failure or malformed.
  bool Decode(const absl::StatusOr<std::vector<int64_t>>& reply, size_t size, Decision* out) const;
  // Counts a failure and decides by the failure mode; kLocal runs `decide_locally`.
  Decision Failed(const std::function<void(Decision*)>& decide_locally);

  struct RemoteWindow {
    int64_t limit, period_nanos, scale, unit, tolerance;  // time in units of 1/scale us
  };
  ClusterOptions cluster_;
  std::vector<RemoteWindow> windows_;
  std::vector<std::string> window_args_;
  std::unique_ptr<GcraKeyedState> local_;  // FailureMode::kLocal
  absl::Duration reply_timeout_;
  std::atomic<int64_t> failure_decisions_{0};
};

}  // namespace internal
}  // namespace v1
}  // namespace sluice

#endif  // SLUICE_LIB_CLUSTER_GCRA_H_
