// Internal: strict cluster-scope sliding windows (a RateLimiter with WindowKind::kSliding windows
// and cluster.store): one EVALSHA per decision, on the Redis server's clock.
//
// Per key and window a sorted set of the admissions still inside the window (members unique
// sequence numbers from a counter key, scores their times in microseconds). The admit script
// drops the members at or before now - period (ZREMRANGEBYSCORE), counts the rest (ZCARD), and
// adds `cost` members at now (ZADD) only if every window has room for them; the keys expire a
// period after the key's last admission (PEXPIRE), so idle keys vanish. The decision is the
// process scope's (sliding_log.h), with the same retry_after and reset_after, in microseconds.
// A key's times never go backwards here either: "now" is at least the newest member's score.
//
// Refund removes `cost` members of the admission's score from every window (members of one score
// are interchangeable). Per-key limits pass their windows as the scripts' arguments.
//
// Keys: `<prefix>:{<redis_name>:<digest>}:z<i>` (window i's set) and `...:n` (the counter), one
// hash tag, so one Cluster slot. They differ from GCRA's `:w<i>`: a rule that changes kind never
// reads the other kind's keys.
//
// Failures are ClusterGcra's (redis_gcra.h): a transport failure goes to the failure mode
// (FailureModePolicy; kLocal decides against a process-scope sliding log with limit / local_share
// per window), anything Redis answered that is not a decision is returned.
#ifndef SLUICE_LIB_ADMISSION_REDIS_SLIDING_H_
#define SLUICE_LIB_ADMISSION_REDIS_SLIDING_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "admission/failure_mode.h"
#include "admission/gcra_backend.h"
#include "admission/sliding_log.h"
#include "sluice/cluster.h"
#include "sluice/decision.h"
#include "stores/redis_scripts.h"

namespace sluice {
inline namespace v1 {
namespace internal {

class ClusterSliding {
 public:
  // Validates the cluster options and the windows (periods must be whole microseconds).
  static absl::StatusOr<std::unique_ptr<ClusterSliding>> Create(
      absl::string_view object, const ClusterOptions& cluster,
      const std::vector<SlidingWindow>& windows, const Clock* clock);

  // Per-key windows as the scripts' arguments (limit, period in us), appended to `args`.
  // InvalidArgument naming windows[i].period unless it is whole microseconds.
  static absl::Status CompileArgs(absl::string_view object,
                                  const std::vector<SlidingWindow>& windows,
                                  std::vector<std::string>* args);

  // Starts a decision of `cost` (1 <= cost <= every limit); never blocks. `window_args`: the
  // per-key windows (CompileArgs), nullptr for the object's.
  std::shared_ptr<PendingReply> Start(const KeyDigest& d, int64_t cost, bool want_fd,
                                      const std::vector<std::string>* window_args = nullptr);
  // Turns the reply into a Decision (allowed: charged_at_nanos is the members' score); on a
  // transport failure, applies the failure mode (then kNoCharge). Other errors (configuration,
  // an impossible reply) are returned. `key`: the per-key windows the call was started with.
  absl::StatusOr<Decision> Finish(const KeyDigest& d, int64_t cost,
                                  const absl::StatusOr<std::vector<int64_t>>& reply,
                                  const SlidingWindow* key = nullptr);
  // Read-only: whether one more admission would pass every window now.
  std::shared_ptr<PendingReply> StartPeek(const KeyDigest& d, bool want_fd,
                                          const std::vector<std::string>* window_args = nullptr);
  absl::StatusOr<Decision> FinishPeek(const KeyDigest& d,
                                      const absl::StatusOr<std::vector<int64_t>>& reply,
                                      const SlidingWindow* key = nullptr);
  // Removes the `cost` members an admission added at `charged_at_nanos` (its decision's) from
  // every window. FinishRefund: OK, or OK when Redis could not be reached (the members then
  // stay: conservative); configuration errors are returned.
  std::shared_ptr<PendingReply> StartRefund(const KeyDigest& d, int64_t cost,
                                            int64_t charged_at_nanos, bool want_fd);
  absl::Status FinishRefund(const absl::StatusOr<std::vector<int64_t>>& reply);

  // A refusal standing for a decision Redis could not make, with the error in `*error`.
  Decision OrRefusal(absl::StatusOr<Decision> d, absl::Status* error) const;

  absl::Duration reply_timeout() const { return reply_timeout_; }
  int64_t failure_decisions() const { return failure_mode_->decisions(); }

 private:
  ClusterSliding() = default;
  std::vector<std::string> Keys(const KeyDigest& d) const;
  std::vector<std::string> Args(int64_t cost,
                                const std::vector<std::string>* window_args = nullptr) const;
  // {allowed, binding window (1-based), remaining, retry_after_us, reset_after_us[, the
  // members' time (us) when `stamped`: the admit script's reply]}; Internal (logged and
  // counted) if a value is impossible. `key`: the call's per-key windows (the numbers describe
  // them), or nullptr.
  absl::StatusOr<Decision> Decode(const std::vector<int64_t>& reply, bool stamped = false,
                                  const SlidingWindow* key = nullptr) const;
  absl::StatusOr<Decision> Failed(const absl::Status& status, const KeyDigest& d, int64_t cost,
                                  bool peek);

  std::string object_;
  ClusterOptions cluster_;
  std::vector<SlidingWindow> windows_;
  std::vector<std::string> window_args_;  // per window: limit, period (us)
  std::unique_ptr<FailureModePolicy> failure_mode_;
  std::unique_ptr<GcraBackend> local_;  // FailureMode::kLocal
  const Clock* clock_ = nullptr;
  absl::Duration reply_timeout_;
};

}  // namespace internal
}  // namespace v1
}  // namespace sluice

#endif  // SLUICE_LIB_ADMISSION_REDIS_SLIDING_H_
