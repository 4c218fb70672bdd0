// -----------------------------------------------------------------------------
// File: sluice/cluster.h
// -----------------------------------------------------------------------------
//
// Cluster scope: the options that put an object's state in Redis (see sluice/redis_store.h), so
// every host decides against one limit, and what happens when Redis cannot answer.
//
// Strict mode: each decision is one EVALSHA of an atomic Lua script that uses the Redis server's
// clock; exact across every process of every host. Leased mode: decisions are local, from leases
// of the quota, with a documented overshoot bound (ClusterMode below). Keys are
// `<prefix>:{<redis_name>:<key digest>}:w<i>`: the hash tag keeps one key's windows in one Redis Cluster
// slot, the raw key never reaches Redis (a 32-hex digest does), and each expires once its window
// is whole again, so Redis holds O(1) per live key and window.
//
// Example: see sluice/redis_store.h.

#ifndef SLUICE_CLUSTER_H_
#define SLUICE_CLUSTER_H_

#include <cstdint>
#include <memory>
#include <string>

#include "absl/time/time.h"

namespace sluice {
inline namespace v1 {

class RedisStore;

// How a cluster-scope object consults Redis.
enum class ClusterMode {
  // One round trip per decision; exact across every process of every host.
  kStrict,
  // RateLimiter only. A process leases units of a key from Redis (charged there at once, on the
  // server's clock) and admits from its lease locally for at most `lease_ttl`. Bound: over any
  // interval of length t, the processes together admit at most
  //
  //     burst + floor((t + lease_ttl) * limit / period)
  //
  // units per key and window, so the overshoot over strict mode is at most
  // limit * lease_ttl / period (1% with the default ttl of period / 100). What a process leased
  // and did not use goes back with its next request, credited only for the part that has not
  // already refilled (so a lease that expired long ago, on a key that has since refilled and
  // been taken by others, gives nothing back; lib/leased_gcra.h proves the bound). Unused units
  // therefore under-admit, never over-admit. About one round trip per `lease_units` decisions; a
  // refused key is refused locally until Redis's retry time.
  kLeased,
};

// What a cluster-scope object decides while Redis is unreachable or slow (a transport failure:
// timeout, connection refused or lost; or LOADING/BUSY). A configuration error (a wrong password,
// a replica, a Sentinel, a Redis Cluster node, ACL denials) is never hidden behind a failure
// mode: the call returns it as an error status (see sluice/redis_store.h, "Errors").
enum class FailureMode {
  kAllow,  // admit everything (fail open: Envoy's and Higress's default)
  kDeny,   // refuse everything (fail closed)
  kLocal,  // decide locally against limit / local_share (Doorman's "safe capacity")
};

// sluice::ClusterOptions
struct ClusterOptions {
  // The Redis connection; null (the default) means the object is not in cluster scope.
  std::shared_ptr<RedisStore> store;
  // Names the object's keys in Redis: every process that shares the limit uses the same name
  // (and the same configuration), as ResponseCache::Options::redis_name names a cache's entries.
  // 1 to 100 characters of [A-Za-z0-9._-]. Required with `store`.
  std::string redis_name;
  // Default: kLocal, which REQUIRES local_share (below).
  FailureMode on_failure = FailureMode::kLocal;
  // kLocal: how many processes share the rule (all hosts' workers together). While Redis is down
  // each process allows limit / local_share (at least 1 per window), so together they stay near
  // the limit. REQUIRED with kLocal: the default 0 makes Create fail, because no default is safe
  // (with 1, N processes would admit N times the limit during an outage). Ignored otherwise.
  // Must be >= 0.
  int64_t local_share = 0;
  // Default: kStrict.
  ClusterMode mode = ClusterMode::kStrict;
  // kLeased: units per lease. 0 (the default) means 1% of the smallest burst (at least 1).
  // At most 4,194,303.
  int64_t lease_units = 0;
  // kLeased: how long a process may admit from a lease. Zero (the default) means 1% of the
  // shortest window's period (at least 1 ms). It sets the overshoot bound above. At least 1 ms
  // and at most the shortest window's period.
  absl::Duration lease_ttl = absl::ZeroDuration();
};

}  // namespace v1
}  // namespace sluice

#endif  // SLUICE_CLUSTER_H_
