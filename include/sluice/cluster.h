// -----------------------------------------------------------------------------
// File: sluice/cluster.h
// -----------------------------------------------------------------------------
//
// Cluster scope: the options that put an object's state in Redis (see sluice/redis_store.h), so
// every host decides against one limit, and what happens when Redis cannot answer.
//
// Strict mode (the one built so far): each decision is one EVALSHA of an atomic Lua script that
// uses the Redis server's clock; exact across every process of every host. Keys are
// `<prefix>:{<rule>:<key digest>}:w<i>`: the hash tag keeps one key's windows in one Redis Cluster
// slot, the raw key never reaches Redis (a 32-hex digest does), and each expires once its window
// is whole again, so Redis holds O(1) per live key and window.
//
// Example: see sluice/redis_store.h.

#ifndef SLUICE_CLUSTER_H_
#define SLUICE_CLUSTER_H_

#include <cstdint>
#include <memory>
#include <string>

namespace sluice {
inline namespace v1 {

class RedisStore;

// What a cluster-scope object decides while Redis is unreachable, slow or failing.
enum class FailureMode {
  kAllow,  // admit everything (fail open: Envoy's and Higress's default)
  kDeny,   // refuse everything (fail closed)
  kLocal,  // decide locally against limit / local_share (Doorman's "safe capacity")
};

// sluice::ClusterOptions
struct ClusterOptions {
  // The Redis connection; null (the default) means the object is not in cluster scope.
  std::shared_ptr<RedisStore> store;
  // Names this rule's keys in Redis; every process enforcing the rule uses the same name (and the
  // same windows). 1 to 100 characters of [A-Za-z0-9._-]. Required with `store`.
  std::string rule;
  // Default: kLocal.
  FailureMode on_failure = FailureMode::kLocal;
  // kLocal: the number of processes sharing the rule; each then allows limit / local_share (at
  // least 1 per window) while Redis is down. Default: 1. Must be >= 1.
  int64_t local_share = 1;
};

}  // namespace v1
}  // namespace sluice

#endif  // SLUICE_CLUSTER_H_
