// Internal: ConcurrencyLimiter leases in Redis (cluster scope). One sorted set per key, members
// the lease ids, scores the lease ends on the Redis server's clock; every script first drops the
// expired leases, so a crashed holder's slot is reclaimed atomically by the next acquire.
#ifndef SLUICE_LIB_CLUSTER_LEASES_H_
#define SLUICE_LIB_CLUSTER_LEASES_H_

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "sluice/cluster.h"
#include "sluice/internal/key_digest.h"
#include "sluice/redis_store.h"

namespace sluice {
inline namespace v1 {
namespace internal {

class ClusterLeases {
 public:
  // Validates the cluster options (the rule; leased mode is refused) and `lease` (whole
  // microseconds, as Redis's clock counts).
  static absl::StatusOr<std::unique_ptr<ClusterLeases>> Create(absl::string_view object,
                                                               const ClusterOptions& cluster,
                                                               absl::Duration lease);

  // A lease id unique across processes and hosts (random, mixed with the pid so a forked child
  // never repeats its parent's sequence). Never 0.
  static uint64_t NewLeaseId();

  // Takes a slot ending `lease` from now if fewer than `max_in_flight` are held. The reply:
  // {granted (0/1), held after the call, granted ? lease length : time until the soonest held
  // lease ends} (microseconds).
  std::shared_ptr<PendingReply> StartAcquire(const KeyDigest& d, int64_t max_in_flight,
                                             uint64_t lease_id, bool want_fd);
  // Gives the slot back; the reply is {1} if it was held, {0} if it had expired.
  std::shared_ptr<PendingReply> StartRelease(const KeyDigest& d, uint64_t lease_id);
  // Moves the lease's end to `lease` from now; {1}, or {0} if it had expired.
  std::shared_ptr<PendingReply> StartRenew(const KeyDigest& d, uint64_t lease_id,
                                           absl::Duration lease, bool want_fd);
  // {unexpired leases held}.
  std::shared_ptr<PendingReply> StartInFlight(const KeyDigest& d);

  const ClusterOptions& cluster() const { return cluster_; }
  absl::Duration reply_timeout() const { return reply_timeout_; }
  void CountFailure() { failure_decisions_.fetch_add(1, std::memory_order_relaxed); }
  int64_t failure_decisions() const { return failure_decisions_.load(); }

 private:
  ClusterLeases(const ClusterOptions& cluster, absl::Duration lease);
  std::vector<std::string> Key(const KeyDigest& d) const;

  const ClusterOptions cluster_;
  const std::string lease_us_;
  const absl::Duration reply_timeout_;
  std::atomic<int64_t> failure_decisions_{0};
};

}  // namespace internal
}  // namespace v1
}  // namespace sluice

#endif  // SLUICE_LIB_CLUSTER_LEASES_H_
