// Internal: ConcurrencyLimiter leases in Redis (cluster scope). One sorted set per key, members
// the lease ids, scores the lease ends on the Redis server's clock; every script first drops the
// expired leases, so a crashed holder's slot is reclaimed atomically by the next acquire.
//
// A stall never costs a slot longer than it lasts. A release that cannot reach Redis is kept by
// the store and sent after it reconnects (until the lease would have ended anyway). An acquire
// whose caller stopped waiting, or whose outcome a dropped connection left unknown, is released
// by the store itself once Redis answers again; such a release of an id Redis has not seen yet
// leaves a tombstone (a second sorted set, `...:r`, ids scored by when they may be forgotten), so
// the acquire, if it is still on its way in a connection Redis has yet to read, takes nothing.
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
#include "stores/redis_scripts.h"

namespace sluice {
inline namespace v1 {
namespace internal {

class ClusterLeases {
 public:
  // The longest lease cluster scope accepts (Lua numbers stay exact, PEXPIRE stays in range).
  static constexpr absl::Duration kMaxLease = absl::Hours(24 * 366);

  // Validates the cluster options (the rule; leased mode is refused) and `lease` (whole
  // microseconds, as Redis's clock counts, and at most kMaxLease).
  static absl::StatusOr<std::unique_ptr<ClusterLeases>> Create(absl::string_view object,
                                                               const ClusterOptions& cluster,
                                                               absl::Duration lease);

  // A lease id unique across processes and hosts (random, mixed with the pid so a forked child
  // never repeats its parent's sequence). Never 0.
  static uint64_t NewLeaseId();

  // Takes a slot ending `lease` from now if fewer than `max_in_flight` are held (and no release
  // of `lease_id` came first). If the caller gives up before the reply, or the connection fails
  // after sending it, the store releases the slot by itself (Delivery::undo).
  std::shared_ptr<PendingReply> StartAcquire(const KeyDigest& d, int64_t max_in_flight,
                                             uint64_t lease_id, bool want_fd);
  struct Acquired {
    bool granted = false;
    int64_t held = 0;           // leases held after the call
    int64_t micros = 0;         // granted: the lease; refused: until the soonest lease ends
  };
  // Reads an acquire reply; Internal (logged, counted) if it is impossible.
  absl::StatusOr<Acquired> DecodeAcquire(const std::vector<int64_t>& reply) const;

  // Gives the slot back, sent without waiting and kept across an outage until
  // `retry_until_nanos` (steady clock; 0: once). A release of an id never acquired (or whose
  // acquire is still on its way) leaves a tombstone, so that acquire takes no slot when it lands.
  void StartRelease(const KeyDigest& d, uint64_t lease_id, int64_t retry_until_nanos);
  // Moves the lease's end to `lease` from now; {1}, or {0} if it had expired.
  std::shared_ptr<PendingReply> StartRenew(const KeyDigest& d, uint64_t lease_id,
                                           absl::Duration lease, bool want_fd);
  // {unexpired leases held}.
  std::shared_ptr<PendingReply> StartInFlight(const KeyDigest& d, bool want_fd);

  const ClusterOptions& cluster() const { return cluster_; }
  absl::Duration reply_timeout() const { return reply_timeout_; }
  // Counts and logs an impossible reply (a protocol error) with the store; returns it.
  absl::Status Impossible(absl::string_view what) const;

 private:
  ClusterLeases(absl::string_view object, const ClusterOptions& cluster, absl::Duration lease);
  std::vector<std::string> Keys(const KeyDigest& d) const;
  ScriptCall ReleaseCall(const KeyDigest& d, uint64_t lease_id) const;

  const std::string object_;
  const ClusterOptions cluster_;
  const int64_t lease_us_;
  const std::string tombstone_us_;
  const absl::Duration reply_timeout_;
};

}  // namespace internal
}  // namespace v1
}  // namespace sluice

#endif  // SLUICE_LIB_CLUSTER_LEASES_H_
