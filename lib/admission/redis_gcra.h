// Internal: strict cluster-scope GCRA (RateLimiter in Redis): one EVALSHA per decision.
#ifndef SLUICE_LIB_CLUSTER_GCRA_H_
#define SLUICE_LIB_CLUSTER_GCRA_H_

#include <atomic>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/functional/function_ref.h"
#include "absl/status/statusor.h"
#include "admission/failure_mode.h"
#include "admission/gcra.h"
#include "sluice/cluster.h"
#include "sluice/decision.h"
#include "sluice/redis_store.h"
#include "stores/redis_scripts.h"
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

  // What the previous lease of a key left unused, given back with the next lease request.
  struct GiveBack {
    int64_t units = 0;     // unused
    int64_t grant_ms = 0;  // when Redis granted it (ms since kRedisEpochUnixSeconds, rounded down)
    int64_t granted = 0;   // how many units it granted
  };

  // The scripts' per-window arguments (scale, unit, tolerance); nullptr: the object's windows.
  using WindowArgs = std::vector<std::string>;
  // Per-key windows (as many as the object's) compiled at the object's scales, appended to
  // `args`. Errors name windows[i].<field>.
  absl::Status CompileArgs(absl::string_view object, const std::vector<Window>& windows,
                           WindowArgs* args) const;

  // Starts a decision; never blocks. An allowed reply carries the server time (charged_at).
  std::shared_ptr<PendingReply> Start(const KeyDigest& d, int64_t cost, bool want_fd,
                                      const WindowArgs* window_args = nullptr);
  // Gives back what is left of the charge of `cost` admitted at `charged_at_nanos` (a decision's
  // server time): see GcraState::Refund. FinishRefund: OK when done, or when Redis could not be
  // reached (the charge then stays: conservative); configuration errors are returned.
  std::shared_ptr<PendingReply> StartRefund(const KeyDigest& d, int64_t cost,
                                            int64_t charged_at_nanos, bool want_fd,
                                            const WindowArgs* window_args = nullptr);
  absl::Status FinishRefund(const absl::StatusOr<std::vector<int64_t>>& reply);
  // Leased mode: asks for up to `want` units (charged now in Redis), first crediting back what
  // `back` left unused, for the part of it that has not refilled yet. The reply: {granted,
  // binding window, remaining, retry_after_us (when none granted), reset_after_us, grant_ms}.
  std::shared_ptr<PendingReply> StartLease(const KeyDigest& d, int64_t want, const GiveBack& back,
                                           bool want_fd = false);
  // Turns the script's reply into a Decision; on a transport failure, applies the failure mode.
  // Other errors (configuration, an impossible reply) are returned.
  // `key`: the per-key windows the call was started with (the reply's numbers describe them).
  absl::StatusOr<Decision> Finish(const KeyDigest& d, int64_t cost,
                                  const absl::StatusOr<std::vector<int64_t>>& reply,
                                  const GcraWindow* key = nullptr);
  // LeakyBucket (one window): books `cost` unless its wait would exceed `max_wait_nanos`.
  // REQUIRES: max_wait_nanos a whole number of microseconds.
  std::shared_ptr<PendingReply> StartQueue(const KeyDigest& d, int64_t cost,
                                           int64_t max_wait_nanos, bool want_fd);
  absl::StatusOr<Decision> FinishQueue(const KeyDigest& d, int64_t cost, int64_t max_wait_nanos,
                                       const absl::StatusOr<std::vector<int64_t>>& reply);
  // TokenBudget: charges `delta` (a refund when negative) to every window, debt allowed.
  std::shared_ptr<PendingReply> StartAdjust(const KeyDigest& d, int64_t delta, bool want_fd,
                                            const WindowArgs* window_args = nullptr);
  absl::StatusOr<Decision> FinishAdjust(const KeyDigest& d, int64_t delta,
                                        const absl::StatusOr<std::vector<int64_t>>& reply,
                                        const GcraWindow* key = nullptr);
  // What `d` has left, without charging: allowed iff one unit would pass every window, and
  // retry_after says when it will. Read-only. Finish with FinishPeek.
  std::shared_ptr<PendingReply> StartPeek(const KeyDigest& d, bool want_fd,
                                          const WindowArgs* window_args = nullptr);
  absl::StatusOr<Decision> FinishPeek(const KeyDigest& d,
                                      const absl::StatusOr<std::vector<int64_t>>& reply,
                                      const GcraWindow* key = nullptr);

  // A refusal standing for a decision Redis could not make (a configuration error), for APIs
  // that return a Decision: `error` gets `d`'s status. Returns *d when it is OK.
  Decision OrRefusal(absl::StatusOr<Decision> d, absl::Status* error) const;

  // Reads a leased reply's numbers. Internal for an impossible reply.
  absl::Status CheckLeaseReply(const std::vector<int64_t>& reply, int64_t want) const;

  // How long a caller waits for a reply before applying the failure mode.
  absl::Duration reply_timeout() const { return reply_timeout_; }
  int64_t failure_decisions() const { return failure_mode_->decisions(); }

 private:
  ClusterGcra() = default;
  std::vector<std::string> Keys(const KeyDigest& d) const;
  std::vector<std::string> Args(int64_t first, const WindowArgs* window_args = nullptr) const;
  // Reads a script reply of `size` integers: {allowed, binding, remaining, retry_after_us,
  // reset_after_us[, delay_us][, now_us when `stamped`]}; Internal if a value is impossible
  // (then it is logged and counted, as a protocol error).
  absl::StatusOr<Decision> Decode(const std::vector<int64_t>& reply, size_t size,
                                  bool stamped = false, const GcraWindow* key = nullptr) const;
  // A failed reply: the failure mode for a transport failure, else the error.
  absl::StatusOr<Decision> Failed(const absl::Status& status,
                                  absl::FunctionRef<void(Decision*)> decide_locally);

  struct RemoteWindow {
    int64_t limit, period_nanos, burst, scale, unit, tolerance;  // time in units of 1/scale us
  };
  // Window i, at its own scale (scale 0) or at `scale` (per-key limits: unit rounded up).
  static absl::StatusOr<RemoteWindow> CompileRemote(absl::string_view object, size_t i,
                                                    const Window& w, int64_t scale);
  static void AppendArgs(const RemoteWindow& r, WindowArgs* args);
  std::string object_;
  ClusterOptions cluster_;
  std::vector<RemoteWindow> windows_;
  std::vector<std::string> window_args_;
  std::unique_ptr<FailureModePolicy> failure_mode_;
  std::unique_ptr<ProcessGcra> local_;  // FailureMode::kLocal
  absl::Duration reply_timeout_;
};

}  // namespace internal
}  // namespace v1
}  // namespace sluice

#endif  // SLUICE_LIB_CLUSTER_GCRA_H_
