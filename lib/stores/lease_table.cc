#include "stores/lease_table.h"

#include <algorithm>
#include <limits>


namespace sluice {
inline namespace v1 {
namespace internal {

LeaseTable::LeaseTable(int64_t max_keys)
    : max_keys_(max_keys),
      shards_(new Shard[size_t{1} << kShardBits]),
      fork_hooks_(std::make_unique<ForkHooks>([this] { LockForFork(); },
                                              [this] { UnlockAfterFork(false); },
                                              [this] { UnlockAfterFork(true); })) {}

LeaseTable::~LeaseTable() { fork_hooks_.reset(); }

void LeaseTable::LockForFork() {
  for (int i = 0; i < (1 << kShardBits); ++i) shards_[i].mu.lock();
}

void LeaseTable::UnlockAfterFork(bool in_child) {
  for (int i = (1 << kShardBits) - 1; i >= 0; --i) {
    if (in_child) {
      shards_[i].mu.ResetInForkChild();
    } else {
      shards_[i].mu.unlock();
    }
  }
}

int64_t LeaseTable::ReclaimLocked(Leases& leases, int64_t now) {
  const size_t before = leases.size();
  absl::erase_if(leases, [now](const auto& lease) { return lease.second <= now; });
  return static_cast<int64_t>(before - leases.size());
}

LeaseStore::Grant LeaseTable::Acquire(const KeyDigest& d, int64_t max_in_flight, int64_t now,
                                      int64_t expires_at) {
  Shard& shard = ShardFor(d);
  MutexLock lock(&shard.mu);
  Grant grant;
  auto it = shard.keys.find(d);
  if (it == shard.keys.end()) {
    if (live_keys_.load(std::memory_order_relaxed) >= max_keys_) {
      grant.table_full = true;
      return grant;
    }
    it = shard.keys.try_emplace(d).first;
    live_keys_.fetch_add(1, std::memory_order_relaxed);
  }
  Leases& leases = it->second;
  if (static_cast<int64_t>(leases.size()) >= max_in_flight) ReclaimLocked(leases, now);
  if (static_cast<int64_t>(leases.size()) >= max_in_flight) {
    grant.in_flight = static_cast<int64_t>(leases.size());
    grant.earliest_expiry = std::numeric_limits<int64_t>::max();
    for (const auto& [id, end] : leases) grant.earliest_expiry = std::min(grant.earliest_expiry, end);
    return grant;
  }
  grant.lease_id = next_lease_id_.fetch_add(1, std::memory_order_relaxed);
  leases.emplace(grant.lease_id, expires_at);
  grant.in_flight = static_cast<int64_t>(leases.size());
  return grant;
}

bool LeaseTable::Release(const KeyDigest& d, uint64_t lease_id, int64_t /*expires_at*/) {
  Shard& shard = ShardFor(d);
  MutexLock lock(&shard.mu);
  auto it = shard.keys.find(d);
  if (it == shard.keys.end()) return false;
  const bool held = it->second.erase(lease_id) > 0;
  if (it->second.empty()) {
    shard.keys.erase(it);
    live_keys_.fetch_sub(1, std::memory_order_relaxed);
  }
  return held;
}

bool LeaseTable::Renew(const KeyDigest& d, uint64_t lease_id, int64_t /*expires_at*/,
                       int64_t new_expires_at) {
  Shard& shard = ShardFor(d);
  MutexLock lock(&shard.mu);
  auto it = shard.keys.find(d);
  if (it == shard.keys.end()) return false;
  auto lease = it->second.find(lease_id);
  if (lease == it->second.end()) return false;
  lease->second = new_expires_at;
  return true;
}

int64_t LeaseTable::InFlight(const KeyDigest& d, int64_t now) {
  Shard& shard = ShardFor(d);
  MutexLock lock(&shard.mu);
  auto it = shard.keys.find(d);
  if (it == shard.keys.end()) return 0;
  return std::count_if(it->second.begin(), it->second.end(),
                       [now](const auto& lease) { return lease.second > now; });
}

int64_t LeaseTable::ReclaimExpired(int64_t now) {
  int64_t reclaimed = 0;
  for (int i = 0; i < (1 << kShardBits); ++i) {
    Shard& shard = shards_[i];
    MutexLock lock(&shard.mu);
    for (auto it = shard.keys.begin(); it != shard.keys.end();) {
      reclaimed += ReclaimLocked(it->second, now);
      if (it->second.empty()) {
        shard.keys.erase(it++);
        live_keys_.fetch_sub(1, std::memory_order_relaxed);
      } else {
        ++it;
      }
    }
  }
  return reclaimed;
}

}  // namespace internal
}  // namespace v1
}  // namespace sluice
