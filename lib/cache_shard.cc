#include "cache_shard.h"

#include <algorithm>

#include "mutex_lock.h"

namespace sluice {
inline namespace v1 {
namespace internal {

namespace {
// Roughly how many entries a shard holds, to size its sketch: answers run about 2 KiB.
int64_t SketchWidth(int64_t capacity_bytes) {
  return std::clamp<int64_t>(capacity_bytes / 2048, 16, int64_t{1} << 22);
}
}  // namespace

CacheShard::CacheShard(int64_t capacity_bytes, double protected_share, bool admission)
    : capacity_(capacity_bytes),
      protected_capacity_(static_cast<int64_t>(static_cast<double>(capacity_bytes) * protected_share)),
      admission_(admission),
      sketch_(SketchWidth(capacity_bytes)) {}

void CacheShard::Remove(List::iterator it) {
  bytes_ -= it->bytes;
  if (it->is_protected) protected_bytes_ -= it->bytes;
  index_.erase(it->digest);
  ListOf(*it).erase(it);
}

void CacheShard::Promote(List::iterator it) {
  if (it->is_protected) {
    protected_.splice(protected_.begin(), protected_, it);
    return;
  }
  it->is_protected = true;
  protected_bytes_ += it->bytes;
  protected_.splice(protected_.begin(), probation_, it);
  while (protected_bytes_ > protected_capacity_ && protected_.size() > 1) {
    auto oldest = std::prev(protected_.end());
    oldest->is_protected = false;
    protected_bytes_ -= oldest->bytes;
    probation_.splice(probation_.begin(), protected_, oldest);
  }
}

CacheShard::List::iterator CacheShard::Victim() {
  return probation_.empty() ? std::prev(protected_.end()) : std::prev(probation_.end());
}

std::shared_ptr<const CachedResponse> CacheShard::Lookup(const CacheKey& key, int64_t now) {
  MutexLock lock(&mu_);
  sketch_.Increment(key.digest_lo);
  auto found = index_.find(std::make_pair(key.digest_hi, key.digest_lo));
  if (found == index_.end()) {
    ++stats_.misses;
    return nullptr;
  }
  List::iterator it = found->second;
  if (it->canonical != key.canonical) {  // a 128-bit collision: never serve another's answer
    ++stats_.collisions;
    ++stats_.misses;
    return nullptr;
  }
  if (it->expires <= now) {
    Remove(it);
    ++stats_.expirations;
    ++stats_.misses;
    return nullptr;
  }
  Promote(it);
  ++stats_.hits;
  return it->value;
}

bool CacheShard::Insert(const CacheKey& key, std::shared_ptr<const CachedResponse> value,
                        int64_t bytes, int64_t expires) {
  MutexLock lock(&mu_);
  if (bytes > capacity_) {
    ++stats_.rejected;
    return false;
  }
  const auto digest = std::make_pair(key.digest_hi, key.digest_lo);
  if (auto found = index_.find(digest); found != index_.end()) Remove(found->second);
  bool compared = false;
  while (bytes_ + bytes > capacity_) {
    List::iterator victim = Victim();
    // TinyLFU: the newcomer must be asked for more often than what it would push out.
    if (admission_ && !compared &&
        sketch_.Estimate(key.digest_lo) <= sketch_.Estimate(victim->digest.second)) {
      ++stats_.rejected;
      return false;
    }
    compared = true;
    Remove(victim);
    ++stats_.evictions;
  }
  probation_.push_front(Node{.digest = digest,
                             .canonical = key.canonical,
                             .value = std::move(value),
                             .bytes = bytes,
                             .expires = expires});
  index_.emplace(digest, probation_.begin());
  bytes_ += bytes;
  ++stats_.inserts;
  return true;
}

bool CacheShard::Erase(const CacheKey& key) {
  MutexLock lock(&mu_);
  auto found = index_.find(std::make_pair(key.digest_hi, key.digest_lo));
  if (found == index_.end() || found->second->canonical != key.canonical) return false;
  Remove(found->second);
  return true;
}

void CacheShard::AddTo(ResponseCache::Stats& s) const {
  MutexLock lock(&mu_);
  s.hits += stats_.hits;
  s.misses += stats_.misses;
  s.inserts += stats_.inserts;
  s.rejected += stats_.rejected;
  s.evictions += stats_.evictions;
  s.expirations += stats_.expirations;
  s.collisions += stats_.collisions;
  s.entries += static_cast<int64_t>(index_.size());
  s.bytes += bytes_;
}

}  // namespace internal
}  // namespace v1
}  // namespace sluice
