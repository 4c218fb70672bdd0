#include "sluice/response_cache.h"

#include <bit>
#include <string>

#include "absl/strings/str_cat.h"
#include "cache/cache_shard.h"
#include "cache/cache_tier.h"
#include "stores/redis_keys.h"
#include "base/fork_hooks.h"

namespace sluice {
inline namespace v1 {
namespace {

absl::Status Invalid(std::string_view field, std::string_view rule) {
  return absl::InvalidArgumentError(
      absl::StrCat("sluice.ResponseCache: ", std::string(field), " ", std::string(rule)));
}

}  // namespace

int64_t CachedResponse::bytes() const {
  int64_t n = static_cast<int64_t>(body.size());
  for (const std::string& c : chunks) n += static_cast<int64_t>(c.size() + sizeof(std::string));
  return n;
}

bool CachedResponse::CallsTools() const {
  // The token with both quotes: inside a JSON string it would read \"tool_calls\" instead.
  constexpr std::string_view kToken = "\"tool_calls\"";
  if (body.view().find(kToken) != std::string_view::npos) return true;
  for (const std::string& c : chunks) {
    if (c.find(kToken) != std::string::npos) return true;
  }
  return false;
}

absl::StatusOr<std::unique_ptr<ResponseCache>> ResponseCache::Create(const Options& o,
                                                                     const Clock* clock) {
  if (clock == nullptr) return Invalid("clock", "is null");
  if (o.max_bytes < (int64_t{64} << 10)) return Invalid("max_bytes", "must be >= 64 KiB");
  if (o.shards < 1 || o.shards > 1024 || !std::has_single_bit(static_cast<unsigned>(o.shards))) {
    return Invalid("shards", "must be a power of two in [1, 1024]");
  }
  if (o.default_ttl <= absl::ZeroDuration()) return Invalid("default_ttl", "must be > 0");
  if (!(o.protected_share >= 0 && o.protected_share < 1)) {
    return Invalid("protected_share", "must be in [0, 1)");
  }
  if (o.redis != nullptr && !internal::IsRedisName(o.redis_name)) {
    return Invalid("redis_name", "must be 1 to 100 characters of [A-Za-z0-9._-]");
  }
  return std::unique_ptr<ResponseCache>(new ResponseCache(o, clock));
}

ResponseCache::ResponseCache(const Options& options, const Clock* clock)
    : options_(options),
      clock_(clock),
      tier_(options.redis == nullptr
                ? nullptr
                : std::make_shared<internal::CacheTier>(options.redis, options.redis_name)) {
  // One tuner for all shards: a sample of the whole cache's keys steers every shard's window.
  auto tuner = options.admission
                   ? std::make_shared<internal::WindowTuner>(options.max_bytes, options.protected_share)
                   : nullptr;
  for (int i = 0; i < options.shards; ++i) {
    shards_.push_back(std::make_shared<internal::CacheShard>(
        options.max_bytes / options.shards, options.protected_share, tuner, clock,
        options.default_ttl, options.store_tool_calls, tier_));
  }
  fork_hooks_ = std::make_unique<internal::ForkHooks>(
      [this, tuner] {
        if (tuner != nullptr) tuner->LockForFork();
        for (const auto& shard : shards_) shard->LockForFork();
      },
      [this, tuner] {
        for (const auto& shard : shards_) shard->UnlockAfterFork(/*in_child=*/false);
        if (tuner != nullptr) tuner->UnlockAfterFork();
      },
      [this, tuner] {
        for (const auto& shard : shards_) shard->UnlockAfterFork(/*in_child=*/true);
        if (tuner != nullptr) tuner->UnlockAfterFork();
      });
}

ResponseCache::~ResponseCache() { fork_hooks_.reset(); }  // no hook may run mid-destruction

internal::CacheShard& ResponseCache::ShardOf(const CacheKey& key) const {
  return *shards_[key.digest_hi & static_cast<uint64_t>(options_.shards - 1)];
}

std::shared_ptr<const CachedResponse> ResponseCache::Get(const CacheKey& key) {
  return ShardOf(key).Lookup(key, clock_->NowNanos());
}

bool ResponseCache::Put(const CacheKey& key, CachedResponse response, absl::Duration ttl) {
  return ShardOf(key).InsertResponse(
      key, std::make_shared<const CachedResponse>(std::move(response)), ttl);
}

bool ResponseCache::Erase(const CacheKey& key) { return ShardOf(key).Erase(key); }

FetchResult ResponseCache::Fetch(const CacheKey& key) { return ShardOf(key).Fetch(key); }

ResponseCache::Stats ResponseCache::stats() const {
  Stats s;
  for (const auto& shard : shards_) shard->AddTo(s);
  if (tier_ != nullptr) tier_->AddTo(s);
  return s;
}

}  // namespace v1
}  // namespace sluice
