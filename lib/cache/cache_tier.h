// Internal: a ResponseCache's Redis tier (sluice/response_cache.h). Entries live under
// `<key_prefix>:<redis_name>:<32 hex digits of the digest>` as cache records (cache_record.h),
// with the in-process entry's TTL as their PX expiry. Every command goes through the store's
// connection thread: nothing here blocks, and a Redis that is down only costs misses.
#ifndef SLUICE_LIB_CACHE_TIER_H_
#define SLUICE_LIB_CACHE_TIER_H_

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "absl/time/time.h"
#include "sluice/redis_store.h"
#include "stores/redis_scripts.h"
#include "sluice/response_cache.h"

namespace sluice {
inline namespace v1 {
namespace internal {

class CacheTier {
 public:
  CacheTier(std::shared_ptr<RedisStore> store, std::string name);

  // What Read found: the answer and how long Redis keeps it still, or nullptr (a miss, a failure,
  // or a record that is not the answer to `key`'s question).
  using ReadDone = std::function<void(std::shared_ptr<const CachedResponse>, absl::Duration ttl)>;
  // Asks Redis for `key`'s answer; `done` runs once, on the connection thread (or at once when
  // the store's breaker is open). If the command is dropped unanswered, `done` is destroyed
  // without being called.
  void Read(const CacheKey& key, ReadDone done);
  // Stores `response` for `ttl` (fire and forget).
  void Write(const CacheKey& key, const CachedResponse& response, absl::Duration ttl);
  void Erase(const CacheKey& key);

  // Adds the tier's counters to `stats`.
  void AddTo(ResponseCache::Stats& stats) const;

 private:
  std::string RedisKey(const CacheKey& key) const;

  // What the replies counted. Held by the commands' callbacks, which must not hold the store:
  // the last reference to a store dropped on its own connection thread could not join it.
  struct Counters {
    std::atomic<int64_t> hits{0}, misses{0}, errors{0}, writes{0}, collisions{0};
  };

  const std::shared_ptr<RedisStore> store_;
  const std::string prefix_;  // "<key_prefix>:<name>:"
  const std::shared_ptr<Counters> counters_ = std::make_shared<Counters>();
};

}  // namespace internal
}  // namespace v1
}  // namespace sluice

#endif  // SLUICE_LIB_CACHE_TIER_H_
