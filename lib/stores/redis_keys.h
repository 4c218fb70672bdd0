// Internal: what every object that keeps state in Redis shares: the key layout, the names that
// may appear in it, the script epoch and the reply timeout.
#ifndef SLUICE_LIB_STORES_REDIS_KEYS_H_
#define SLUICE_LIB_STORES_REDIS_KEYS_H_

#include <cstdint>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "sluice/redis_store.h"
#include "stores/redis_scripts.h"
#include "sluice/internal/key_digest.h"

namespace sluice {
inline namespace v1 {
namespace internal {

// Scripts count time in microseconds since 2025-01-01 (not 1970): Lua numbers are doubles, exact
// below 2^53, so times scaled by up to 16 stay exact until the 2040s.
inline constexpr int64_t kRedisEpochUnixSeconds = 1735689600;

// Every sluice script starts with this Lua: `sluice_now(arg)` is "now" in microseconds since
// kRedisEpochUnixSeconds, from the Redis server's TIME, so every host decides on one clock; or,
// when the store has RedisOptions::script_clock_for_testing, `arg` (RedisScripts::ScriptNow),
// which is empty otherwise.
std::string WithScriptNow(absl::string_view body);

// Whether `name` may name things in Redis keys (a limiter's or a cache's redis_name): 1 to 100
// characters of [A-Za-z0-9._-], so it never holds the ':' separator or a '{' hash tag.
bool IsRedisName(std::string_view name);

// `<prefix>:{<redis_name>:<32 hex digest>}`: the hash tag keeps one key's Redis keys in one
// Redis Cluster slot, and the raw key never reaches Redis.
std::string KeyTag(const RedisStore& store, std::string_view redis_name, const KeyDigest& d);

// How long a caller waits for a reply before giving up on it (and applying its failure mode):
// the command timeout, plus the connect timeout that a reconnect may add.
absl::Duration ReplyTimeout(const RedisStore& store);

// How long an asynchronous read of shared state (the Balancer's holds, loads, routes and
// round-robin turns) may stay unanswered before the next may start, in nanoseconds: four reply
// timeouts, at least a second, so a reply lost to a reconnect does not stop reads for good.
int64_t ReadPatienceNanos(const RedisStore& store);

}  // namespace internal
}  // namespace v1
}  // namespace sluice

#endif  // SLUICE_LIB_STORES_REDIS_KEYS_H_
