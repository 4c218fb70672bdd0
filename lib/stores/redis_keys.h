// Internal: what every cluster-scope object shares: validation of ClusterOptions, the Redis key
// layout, the script epoch and the reply timeout.
#ifndef SLUICE_LIB_CLUSTER_KEYS_H_
#define SLUICE_LIB_CLUSTER_KEYS_H_

#include <cstdint>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "sluice/cluster.h"
#include "sluice/internal/key_digest.h"

namespace sluice {
inline namespace v1 {
namespace internal {

// Scripts count time in microseconds since 2025-01-01 (not 1970): Lua numbers are doubles, exact
// below 2^53, so times scaled by up to 16 stay exact until the 2040s.
inline constexpr int64_t kRedisEpochUnixSeconds = 1735689600;

// Every sluice script starts with this Lua: `sluice_now(arg)` is "now" in microseconds since
// kRedisEpochUnixSeconds, from the Redis server's TIME, so every host decides on one clock; or,
// when the store has RedisOptions::script_clock_for_testing, `arg` (RedisStore::ScriptNow()),
// which is empty otherwise.
std::string WithScriptNow(absl::string_view body);

// Whether `name` may name things in Redis keys (a cluster rule, a cache's Redis tier): 1 to 100
// characters of [A-Za-z0-9._-], so it never holds the ':' separator or a '{' hash tag.
bool IsRedisName(std::string_view name);

// InvalidArgument naming the field unless `cluster` (with a store) is well formed. With
// FailureMode::kLocal, local_share must be set (>= 1): the default 0 refuses, because with 1 every
// process alone would admit the whole limit while Redis is down.
absl::Status CheckClusterOptions(absl::string_view object, const ClusterOptions& cluster);

// `<prefix>:{<rule>:<32 hex digest>}`: the hash tag keeps one key's Redis keys in one Redis
// Cluster slot, and the raw key never reaches Redis.
std::string KeyTag(const ClusterOptions& cluster, const KeyDigest& d);

// How long a caller waits for a reply before applying the failure mode: the command timeout,
// plus the connect timeout that a reconnect may add.
absl::Duration ReplyTimeout(const ClusterOptions& cluster);

}  // namespace internal
}  // namespace v1
}  // namespace sluice

#endif  // SLUICE_LIB_CLUSTER_KEYS_H_
