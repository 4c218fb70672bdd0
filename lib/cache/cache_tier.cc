#include "stores/redis_scripts.h"
#include "cache/cache_tier.h"

#include <algorithm>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "cache/cache_record.h"

namespace sluice {
inline namespace v1 {
namespace internal {
namespace {

// GET and PTTL in one round trip: {pttl, record}, or {} for a miss.
const std::string kReadScript = R"lua(
local record = redis.call('GET', KEYS[1])
if not record then return {} end
return {redis.call('PTTL', KEYS[1]), record}
)lua";

// ARGV: record, time to live in milliseconds.
const std::string kWriteScript = R"lua(
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1
)lua";

const std::string kEraseScript = R"lua(
return redis.call('DEL', KEYS[1])
)lua";

}  // namespace

CacheTier::CacheTier(std::shared_ptr<RedisStore> store, std::string name)
    : store_(std::move(store)),
      prefix_(absl::StrCat(store_->options().key_prefix, ":", name, ":")) {}

std::string CacheTier::RedisKey(const CacheKey& key) const {
  return absl::StrCat(prefix_, key.DigestHex());
}

void CacheTier::Read(const CacheKey& key, ReadDone done) {
  auto finish = [counters = counters_, canonical = key.canonical,
                 done = std::move(done)](PendingReply& reply) {
    absl::StatusOr<std::vector<int64_t>> values = reply.Wait(absl::ZeroDuration());
    const std::vector<std::string>& strings = reply.strings();
    if (!values.ok()) {
      counters->errors.fetch_add(1, std::memory_order_relaxed);
      return done(nullptr, absl::ZeroDuration());
    }
    // PTTL -1: no expiry (written by someone else); -2: expired between GET and PTTL.
    if (strings.size() != 1 || values->size() != 1 || (*values)[0] == -2) {
      counters->misses.fetch_add(1, std::memory_order_relaxed);
      return done(nullptr, absl::ZeroDuration());
    }
    absl::StatusOr<DecodedCacheRecord> record = DecodeCacheRecord(strings[0]);
    if (!record.ok()) {
      counters->errors.fetch_add(1, std::memory_order_relaxed);
      return done(nullptr, absl::ZeroDuration());
    }
    if (record->canonical != canonical) {
      counters->collisions.fetch_add(1, std::memory_order_relaxed);
      return done(nullptr, absl::ZeroDuration());
    }
    counters->hits.fetch_add(1, std::memory_order_relaxed);
    const int64_t pttl = (*values)[0];
    done(std::make_shared<const CachedResponse>(std::move(record->response)),
         pttl > 0 ? absl::Milliseconds(pttl) : absl::ZeroDuration());
  };
  RedisScripts::RunThen(*store_, kReadScript, {RedisKey(key)}, {}, std::move(finish));
}

void CacheTier::Write(const CacheKey& key, const CachedResponse& response, absl::Duration ttl) {
  const int64_t ttl_ms = std::max<int64_t>(1, absl::ToInt64Milliseconds(ttl));
  RedisScripts::RunThen(*store_, kWriteScript, {RedisKey(key)},
                        {EncodeCacheRecord(key.canonical, response), absl::StrCat(ttl_ms)},
                        [counters = counters_](PendingReply& reply) {
                          auto& counter = reply.Wait(absl::ZeroDuration()).ok() ? counters->writes
                                                                                 : counters->errors;
                          counter.fetch_add(1, std::memory_order_relaxed);
                        });
}

void CacheTier::Erase(const CacheKey& key) {
  RedisScripts::RunThen(*store_, kEraseScript, {RedisKey(key)}, {},
                        [counters = counters_](PendingReply& reply) {
                          if (!reply.Wait(absl::ZeroDuration()).ok()) {
                            counters->errors.fetch_add(1, std::memory_order_relaxed);
                          }
                        });
}

void CacheTier::AddTo(ResponseCache::Stats& s) const {
  s.redis_hits += counters_->hits.load(std::memory_order_relaxed);
  s.redis_misses += counters_->misses.load(std::memory_order_relaxed);
  s.redis_errors += counters_->errors.load(std::memory_order_relaxed);
  s.redis_writes += counters_->writes.load(std::memory_order_relaxed);
  s.collisions += counters_->collisions.load(std::memory_order_relaxed);
}

}  // namespace internal
}  // namespace v1
}  // namespace sluice
