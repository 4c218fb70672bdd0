// -----------------------------------------------------------------------------
// File: sluice/scope.h
// -----------------------------------------------------------------------------
//
// Where an admission object keeps its state: its scope. RateLimiter, LeakyBucket, TokenBudget
// and ConcurrencyLimiter take the same three options (their Options derive from ScopeOptions),
// and decide the same way in every scope; only who shares the limit changes.
//
//   process  (the default)    The state lives in the object. Decisions take tens of
//                             nanoseconds; each process has its own limit.
//   host     shared_region    The state lives in /dev/shm/sluice.<name>, shared by every process
//                             of the host that opens the same name with the same configuration
//                             (Gunicorn and Celery workers): one limit per host, no server, no
//                             lock; a process killed at any instant leaves it usable and exact.
//                             Its capacity, max_keys, is fixed and reserved at creation
//                             (sluice/shared_region.h; docs/deployment.md for Docker).
//   cluster  cluster.store    The state lives in Redis (sluice/cluster.h, sluice/redis_store.h),
//                             one limit for every host, decided by atomic scripts on the Redis
//                             server's clock; while Redis is unreachable, cluster.on_failure
//                             decides.
//
// Example:
//
//   sluice::RateLimiter::Options options;
//   options.windows = {sluice::Window::PerMinute(600)};
//   options.shared_region = "tenant-rpm";                  // host scope
//   // or: options.cluster.store = store; options.cluster.redis_name = "tenant-rpm";
//   //     options.cluster.local_share = 16;              // cluster scope
//
// Every process sharing a region or a Redis name must configure the object identically: a region
// refuses another configuration (FailedPrecondition naming both); in Redis, other windows under
// the same name would fight over one key.

#ifndef SLUICE_SCOPE_H_
#define SLUICE_SCOPE_H_

#include <cstdint>
#include <string>

#include "sluice/cluster.h"

namespace sluice {
inline namespace v1 {

// sluice::ScopeOptions
struct ScopeOptions {
  // The most keys whose state is kept at once. In process and cluster scope it bounds the keys
  // that are mid-window (a key whole again is dropped; memory follows the live keys); in host
  // scope it is the region's fixed capacity, reserved at creation (slots are never freed).
  // A new key beyond it is refused (ResourceExhausted), known keys keep working.
  // Default: 1,048,576. Must be >= 1, and with `shared_region` at most kMaxSharedRegionKeys
  // (sluice/shared_region.h gives the bytes each value needs: 64 MiB + 4 KiB for the default and
  // one window, more than Docker's default /dev/shm; 4 MiB for 65,536 keys).
  int64_t max_keys = int64_t{1} << 20;
  // Host scope: the region's name (1 to 200 characters of [A-Za-z0-9._-]). Default: empty
  // (process scope, unless `cluster.store` is set).
  std::string shared_region;
  // Cluster scope: the Redis store and how to use it (sluice/cluster.h). Default: no store. Not
  // with `shared_region`.
  ClusterOptions cluster;
};

}  // namespace v1
}  // namespace sluice

#endif  // SLUICE_SCOPE_H_
