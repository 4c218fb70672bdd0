// Cluster scope for in-flight counts (Options::redis): every load-aware rule (least request,
// prefix affinity's load gates, scored, bounded consistent hashing, max_concurrency) counts the
// picks other hosts have in flight on an endpoint, besides this host's (or process's), so hosts
// stop piling onto the endpoint each one alone thinks idle.
//
// Redis keeps a sorted set per endpoint, `<prefix>:{lb:<redis_name>}:inflight:<endpoint digest>`
// (one Cluster slot for the name), a member per pick in flight, "<counter tag>:<pick number>",
// scored by when its lease ends (the Redis server's clock, `shared_lease` after the pick). A pick
// adds its member (one ZADD, never waited for, not retried: one sent late could outlive its
// release; removed again when its outcome is unknown) and its completion removes it (retried across an outage until the lease would have
// ended, so a completion during an outage is not lost); a killed process's members expire with
// their lease. A counter is this host (every process of a host that shares a `shared_region`,
// whose picks the host region counts already) or, without a shared region, this balancer. With
// the holds' rhythm (one read under way at most, when the last is older than `redis_refresh`),
// a pick reads, per endpoint, the live members of every other counter; the sums are kept per
// endpoint and added to the local counts by the pick filter. So another host's picks count here
// within redis_refresh plus a round trip; while Redis is unreachable the sums are zero (each host
// balances alone, as without cluster scope). A read costs Redis O(picks in flight on the
// balancer's endpoints).
#ifndef SLUICE_LIB_BALANCING_CLUSTER_LOADS_H_
#define SLUICE_LIB_BALANCING_CLUSTER_LOADS_H_

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/time/time.h"
#include "sluice/internal/mutex.h"
#include "sluice/redis_store.h"

namespace sluice {
inline namespace v1 {
namespace internal {

// Thread-safe. Picks keep it (to release their members after the balancer has gone); a read's
// callback holds only the Sums (no store, no endpoint state, no clock).
class ClusterLoads {
 public:
  // `host_tag` names this host's counter (the shared region's tag), 0 without a shared region:
  // then each balancer in each process counts alone (a fork()ed child apart from its parent).
  // `lease`: how long a member counts.
  ClusterLoads(std::shared_ptr<RedisStore> store, const std::string& redis_name,
               absl::Duration refresh, absl::Duration lease, uint64_t host_tag);

  // The cell where the other counters' picks in flight on the endpoint with this field digest
  // (ClusterHolds::FieldOf) are kept, as last read: the endpoint's state keeps it and the pick
  // filter loads it. Untrack stops reading it.
  std::shared_ptr<std::atomic<int64_t>> Track(const std::string& field);
  void Untrack(const std::string& field);

  // Starts a read when the last is older than the refresh interval and none is under way.
  // Never blocks; a few atomic loads when nothing is due.
  void MaybeRefresh(int64_t now);

  // Counts a pick on `field`'s endpoint fleet-wide; returns its member, for Release.
  std::string Acquire(const std::string& field);
  void Release(const std::string& field, const std::string& member);

 private:
  struct Sums {
    std::atomic<int64_t> reading_until{0};  // a read under way until then (0: none)
    Mutex mu;
    absl::flat_hash_map<std::string, std::shared_ptr<std::atomic<int64_t>>> cells
        ABSL_GUARDED_BY(mu);
  };

  std::string KeyOf(const std::string& field) const { return key_prefix_ + field; }
  // This counter's tag now (16 hex digits).
  std::string Tag() const;

  const std::shared_ptr<RedisStore> store_;
  const std::string key_prefix_;  // "<prefix>:{lb:<redis_name>}:inflight:"
  const uint64_t host_tag_;
  const uint64_t nonce_;
  const absl::Duration lease_;
  const int64_t refresh_nanos_;
  const int64_t patience_nanos_;
  const std::shared_ptr<Sums> sums_;
  std::atomic<int64_t> next_read_at_{0};
  std::atomic<uint64_t> picks_{0};
};

}  // namespace internal
}  // namespace v1
}  // namespace sluice

#endif  // SLUICE_LIB_BALANCING_CLUSTER_LOADS_H_
