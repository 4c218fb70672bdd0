#include "cache/cache_shard.h"

#include <algorithm>
#include <utility>

#include "sluice/internal/mutex.h"
#include "base/time_arithmetic.h"

namespace sluice {
inline namespace v1 {
namespace internal {

CacheShard::CacheShard(int64_t capacity_bytes, double protected_share,
                       std::shared_ptr<WindowTuner> tuner, const Clock* clock,
                       absl::Duration default_ttl, bool store_tool_calls,
                       std::shared_ptr<CacheTier> tier)
    : capacity_(capacity_bytes),
      tuner_(std::move(tuner)),
      policy_(capacity_bytes, protected_share, /*admission=*/tuner_ != nullptr,
              tuner_ != nullptr ? tuner_->share() : 0),
      window_share_(tuner_ != nullptr ? tuner_->share() : 0),
      clock_(clock),
      default_ttl_(default_ttl),
      store_tool_calls_(store_tool_calls),
      tier_(std::move(tier)) {}

void CacheShard::FollowTuner() {
  if (tuner_ == nullptr) return;
  const double share = tuner_->share();
  if (share == window_share_) return;
  window_share_ = share;
  policy_.SetWindowShare(share);
}

std::shared_ptr<const CachedResponse> CacheShard::Lookup(const CacheKey& key, int64_t now) {
  const Digest digest(key.digest_hi, key.digest_lo);
  const bool sampled = tuner_ != nullptr && tuner_->Sampled(digest);
  if (sampled) tuner_->Lookup(digest, now);
  int64_t bytes = 0;
  std::shared_ptr<const CachedResponse> value = LookupLocked(key, digest, now, bytes);
  // A miniature that missed stores the answer, as it would have from the caller's Put had it
  // been this shard that missed: the miniatures must not follow the shard's own choices.
  if (sampled && value != nullptr) tuner_->Insert(digest, bytes);
  return value;
}

std::shared_ptr<const CachedResponse> CacheShard::LookupLocked(const CacheKey& key,
                                                               const Digest& digest, int64_t now,
                                                               int64_t& bytes) {
  MutexLock lock(&mu_);
  policy_.Count(digest);
  Policy::Iterator it = policy_.Find(digest);
  if (it == policy_.end()) {
    ++stats_.misses;
    return nullptr;
  }
  if (it->payload.canonical != key.canonical) {  // a 128-bit collision: never serve another's answer
    ++stats_.collisions;
    ++stats_.misses;
    return nullptr;
  }
  if (it->payload.expires <= now) {
    policy_.Remove(it);
    ++stats_.expirations;
    ++stats_.misses;
    return nullptr;
  }
  policy_.Touch(it, now);
  ++stats_.hits;
  bytes = it->bytes;
  return it->payload.value;
}

bool CacheShard::Insert(const CacheKey& key, std::shared_ptr<const CachedResponse> value,
                        int64_t bytes, int64_t expires) {
  const Digest digest(key.digest_hi, key.digest_lo);
  if (tuner_ != nullptr && tuner_->Sampled(digest)) tuner_->Insert(digest, bytes);
  MutexLock lock(&mu_);
  if (bytes > capacity_) {
    ++stats_.rejected;
    return false;
  }
  FollowTuner();
  ++stats_.inserts;
  return policy_.Insert(digest, bytes,
                        Stored{.canonical = key.canonical, .value = std::move(value), .expires = expires});
}

bool CacheShard::Erase(const CacheKey& key) {
  if (tier_ != nullptr) tier_->Erase(key);
  MutexLock lock(&mu_);
  Policy::Iterator it = policy_.Find(Digest(key.digest_hi, key.digest_lo));
  if (it == policy_.end() || it->payload.canonical != key.canonical) return false;
  policy_.Remove(it);
  return true;
}

bool CacheShard::InsertResponse(const CacheKey& key, std::shared_ptr<const CachedResponse> value,
                                absl::Duration ttl, bool write_through) {
  if (!store_tool_calls_ && value->CallsTools()) {
    skipped_tool_calls_.fetch_add(1, std::memory_order_relaxed);
    return false;
  }
  const int64_t bytes =
      static_cast<int64_t>(key.canonical.size()) + value->bytes() + ResponseCache::kEntryOverhead;
  const absl::Duration life =
      std::min(ttl > absl::ZeroDuration() ? ttl : default_ttl_, ResponseCache::kMaxTtl);
  if (write_through && tier_ != nullptr) tier_->Write(key, *value, life);
  return Insert(key, std::move(value), bytes, internal::AddDuration(clock_->NowNanos(), life));
}

FetchResult CacheShard::Fetch(const CacheKey& key) {
  FetchResult result;
  if ((result.hit = Lookup(key, clock_->NowNanos()))) return result;
  std::shared_ptr<Flight> flight = JoinOrStartFlight(key, result);
  if (flight == nullptr) return result;
  if (tier_ == nullptr) {
    result.lead.emplace(Lead(std::move(flight)));
    return result;
  }
  // Redis leads first: the caller waits, first in line for the lead, while the tier is asked.
  auto waiter = std::make_shared<Waiter>();
  {
    MutexLock flight_lock(&flight->mu);
    flight->waiters.push_back(waiter);
  }
  result.wait.emplace(Wait(flight, std::move(waiter)));
  // Held by the read: if the command is dropped unanswered, ~Lead passes the lead on.
  auto redis_lead = std::make_shared<Lead>(Lead(std::move(flight)));
  tier_->Read(key, [redis_lead](std::shared_ptr<const CachedResponse> answer, absl::Duration ttl) {
    if (answer != nullptr) {
      redis_lead->Finish(std::move(answer), ttl, /*store=*/true, /*write_through=*/false);
      return;
    }
    std::shared_ptr<Flight> missed = std::move(redis_lead->flight_);
    if (std::shared_ptr<CacheShard> shard = missed->shard.lock()) {
      shard->PassLead(missed);
    } else {
      Lead(std::move(missed)).Abandon();
    }
  });
  return result;
}

std::shared_ptr<Flight> CacheShard::JoinOrStartFlight(const CacheKey& key, FetchResult& result) {
  const auto digest = std::make_pair(key.digest_hi, key.digest_lo);
  MutexLock lock(&flights_mu_);
  auto found = flights_.find(digest);
  if (found != flights_.end() && found->second->key.canonical == key.canonical) {
    std::shared_ptr<Flight> flight = found->second;
    auto waiter = std::make_shared<Waiter>();
    {
      MutexLock flight_lock(&flight->mu);
      flight->waiters.push_back(waiter);
    }
    merged_.fetch_add(1, std::memory_order_relaxed);
    result.wait.emplace(Wait(std::move(flight), std::move(waiter)));
    return nullptr;
  }
  {
    // A leader may have stored the answer and ended its flight since the caller's lookup.
    MutexLock store_lock(&mu_);
    Policy::Iterator stored = policy_.Find(digest);
    if (stored != policy_.end() && stored->payload.canonical == key.canonical &&
        stored->payload.expires > clock_->NowNanos()) {
      result.hit = stored->payload.value;
      return nullptr;
    }
  }
  auto flight = std::make_shared<Flight>();
  flight->shard = weak_from_this();
  flight->key = key;
  if (found == flights_.end()) flights_.emplace(digest, flight);  // a digest collision: unmerged
  return flight;
}

void CacheShard::EndFlight(const std::shared_ptr<Flight>& flight) {
  MutexLock lock(&flights_mu_);
  auto found = flights_.find(std::make_pair(flight->key.digest_hi, flight->key.digest_lo));
  if (found != flights_.end() && found->second == flight) flights_.erase(found);
}

bool CacheShard::PassLead(const std::shared_ptr<Flight>& flight) {
  MutexLock lock(&flights_mu_);
  std::shared_ptr<Waiter> next;
  std::vector<std::shared_ptr<Waiter>> broken;
  {
    MutexLock flight_lock(&flight->mu);
    // Followers that tailed the stream have sent part of it on: a new leader's answer would not
    // continue it. Their stream broke; the others wait for the next leader's, from its start.
    for (auto it = flight->waiters.begin(); it != flight->waiters.end();) {
      if ((*it)->taken == 0) {
        ++it;
        continue;
      }
      (*it)->broken = true;
      broken.push_back(std::move(*it));
      it = flight->waiters.erase(it);
    }
    flight->chunks.clear();
    if (!flight->waiters.empty()) {
      next = flight->waiters.front();
      flight->waiters.pop_front();
      next->promoted = true;  // under the flight's lock: a Wait going away sees it (~Wait)
    }
  }
  for (const auto& w : broken) w->Wake();
  if (next == nullptr) {
    auto found = flights_.find(std::make_pair(flight->key.digest_hi, flight->key.digest_lo));
    if (found != flights_.end() && found->second == flight) flights_.erase(found);
    return false;
  }
  next->Wake();
  return true;
}

void CacheShard::LockForFork() {
  flights_mu_.lock();  // flights_mu_ before mu_, as everywhere
  mu_.lock();
}

void CacheShard::UnlockAfterFork(bool in_child) {
  // The Flight objects are dropped, not woken: their followers' eventfds are shared with the
  // parent, whose callers would be woken too.
  if (in_child) flights_.clear();
  mu_.unlock();
  flights_mu_.unlock();
}

void CacheShard::AddTo(ResponseCache::Stats& s) const {
  s.merged_waits += merged_.load(std::memory_order_relaxed);
  s.leader_failovers += failovers_.load(std::memory_order_relaxed);
  s.skipped_tool_calls += skipped_tool_calls_.load(std::memory_order_relaxed);
  MutexLock lock(&mu_);
  s.hits += stats_.hits;
  s.misses += stats_.misses;
  s.inserts += stats_.inserts;
  s.rejected += stats_.rejected + policy_.rejected();
  s.evictions += stats_.evictions + policy_.evictions();
  s.expirations += stats_.expirations;
  s.collisions += stats_.collisions;
  s.entries += static_cast<int64_t>(policy_.size());
  s.bytes += policy_.bytes();
}

}  // namespace internal
}  // namespace v1
}  // namespace sluice
