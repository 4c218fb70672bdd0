// Cluster scope for a Balancer's cooldowns and ejections (Options::redis): every process
// of every host that balances under the same `redis_name` sees one cooldown and one ejection per
// endpoint, so a key that one worker cooled down after a 429 is skipped by the whole fleet.
//
// Redis keeps one hash, `<prefix>:{lb:<redis_name>}:holds` (one Cluster slot), with a field per
// endpoint that holds something: the 32-hex digest of its id (ids never reach Redis) ->
// "<cooldown until> <reason> <ejected until>", microseconds on the Redis server's clock. Writes
// only lengthen a hold (the later end wins, as in the host region) except a restore, which
// deletes the field; the hash expires a minute after its longest hold.
//
// Picks never wait for Redis. Each process keeps the holds in its endpoints' own cells (or the
// host region's) and mirrors Redis into them: a pick that finds the mirror older than
// `redis_refresh` sends one read (at most one under way), whose reply sets every tracked
// endpoint's holds to Redis's, converted to this process's clock by the server's "now" in the same
// reply. A hold this process sets is applied to its own cells at once and sent to Redis (kept
// across an outage until the hold would have ended); a read answered after such a local write
// only lengthens holds (it may predate the write), so a fresh local cooldown is never undone by a
// stale read. While Redis is unreachable the mirror stays as it was and each process keeps its
// own holds: the balancer degrades to the process (or host) scope, never to an error.
#ifndef SLUICE_LIB_BALANCING_CLUSTER_HOLDS_H_
#define SLUICE_LIB_BALANCING_CLUSTER_HOLDS_H_

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/time/time.h"
#include "sluice/clock.h"
#include "sluice/failure.h"
#include "sluice/internal/mutex.h"
#include "sluice/redis_store.h"

namespace sluice {
inline namespace v1 {
namespace internal {

struct EndpointState;
class PendingReply;

// Thread-safe. Shared by the Balancer's core and its endpoints (a Pick that outlives the
// balancer may still send a hold, so this keeps the store alive). A read's callback holds only
// the Mirror (no store, no endpoint), so a balancer let go while its read is under way goes at
// once, and the callback reads the balancer's clock only until the balancer detaches it (its
// destructor), under the mirror's lock: a callback that still holds an endpoint (a pick may
// outlive its balancer) never reads a clock the balancer's owner has let go.
class ClusterHolds {
 public:
  // InvalidArgument naming redis_name / redis_refresh (Balancer's option names).
  static absl::Status Validate(const std::string& redis_name, absl::Duration refresh);
  ClusterHolds(std::shared_ptr<RedisStore> store, const std::string& redis_name,
               absl::Duration refresh, const Clock* clock);

  // The field of endpoint `id` in the hash (its digest, 32 hex digits).
  static std::string FieldOf(std::string_view id);

  // Endpoint `state` (id `id`) follows Redis's holds from the next read on; Untrack stops it.
  void Track(std::string_view id, const std::shared_ptr<EndpointState>& state);
  void Untrack(std::string_view id);

  // Sends a hold this process just set on `field`'s endpoint (its end on the balancer's clock).
  void SendCooldown(const std::string& field, int64_t until, Failure reason);
  void SendEjection(const std::string& field, int64_t until);
  // Sends a restore: both holds end now, fleet-wide.
  void SendClear(const std::string& field);

  // Starts a read when the mirror is older than the refresh interval and none is under way.
  // Never blocks; a few atomic loads when nothing is due.
  void MaybeRefresh(int64_t now);
  // The balancer is going: reads answered from now on are dropped (their callback would read
  // its clock). Waits for a callback that is reading the clock.
  void Detach();

 private:
  // What a read's reply updates.
  struct Mirror {
    explicit Mirror(const Clock* c) : clock(c) {}
    // The reply of a read started when `writes` was `writes_then`.
    void Apply(PendingReply& reply, uint64_t writes_then);

    // A read under way until this time (0: none). A deadline rather than a flag: a read that is
    // never answered (its queue dropped by fork() in a child) must not stop reads for good.
    std::atomic<int64_t> reading_until{0};
    std::atomic<uint64_t> writes{0};  // holds sent by this process so far
    Mutex mu;
    const Clock* clock ABSL_GUARDED_BY(mu);  // null once the balancer has gone (Detach)
    absl::flat_hash_map<std::string, std::weak_ptr<EndpointState>> tracked ABSL_GUARDED_BY(mu);
  };

  void SendHold(const std::string& field, int kind, int64_t until, Failure reason);

  const std::shared_ptr<RedisStore> store_;
  const std::string key_;
  const int64_t refresh_nanos_;
  const int64_t read_patience_nanos_;  // how long a read may stay unanswered
  const Clock* const clock_;
  const std::shared_ptr<Mirror> mirror_;
  std::atomic<int64_t> next_read_at_{0};  // on the balancer's clock
};

}  // namespace internal
}  // namespace v1
}  // namespace sluice

#endif  // SLUICE_LIB_BALANCING_CLUSTER_HOLDS_H_
