// One shard of the ResponseCache, under one mutex: W-TinyLFU within a byte budget
// (cache/w_tiny_lfu.h), its window's share set by the cache's WindowTuner.
#ifndef SLUICE_LIB_CACHE_SHARD_H_
#define SLUICE_LIB_CACHE_SHARD_H_

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "sluice/internal/mutex.h"
#include "cache/cache_tier.h"
#include "cache/flight.h"
#include "cache/w_tiny_lfu.h"
#include "cache/window_tuner.h"
#include "sluice/response_cache.h"
#include "sluice/single_flight.h"

namespace sluice {
inline namespace v1 {
namespace internal {

class CacheShard;

class CacheShard : public std::enable_shared_from_this<CacheShard> {
 public:
  // `tuner`: the cache's window tuner, shared by its shards; null gives no window and no
  // admission filter (a plain segmented LRU).
  CacheShard(int64_t capacity_bytes, double protected_share, std::shared_ptr<WindowTuner> tuner,
             const Clock* clock, absl::Duration default_ttl, bool store_tool_calls,
             std::shared_ptr<CacheTier> tier);

  // ResponseCache::Fetch for this shard's keys.
  FetchResult Fetch(const CacheKey& key);
  // Fetch's bookkeeping, under flights_mu_: joins the key's flight (result.wait), or finds the
  // answer stored meanwhile (result.hit), and returns null; or starts a flight and returns it.
  std::shared_ptr<Flight> JoinOrStartFlight(const CacheKey& key, FetchResult& result);
  // Stores an answer (bytes and expiry computed here; tool calls kept out if configured so), and
  // with `write_through`, in the Redis tier too. Returns whether it is stored in process.
  bool InsertResponse(const CacheKey& key, std::shared_ptr<const CachedResponse> value,
                      absl::Duration ttl, bool write_through = true);
  // The flight is over: forget it (if it is still the key's flight).
  void EndFlight(const std::shared_ptr<Flight>& flight);
  // The flight's lead is free (its leader gave up, or the Redis tier did not have the answer):
  // promote the next follower and return true, or end the flight.
  bool PassLead(const std::shared_ptr<Flight>& flight);
  // A leader gave up and a follower took over (Stats::leader_failovers).
  void CountFailover() { failovers_.fetch_add(1, std::memory_order_relaxed); }

  std::shared_ptr<const CachedResponse> Lookup(const CacheKey& key, int64_t now);
  bool Insert(const CacheKey& key, std::shared_ptr<const CachedResponse> value, int64_t bytes,
              int64_t expires);
  // Removes the entry here and in the Redis tier.
  bool Erase(const CacheKey& key);
  // Adds this shard's counters to `stats`.
  void AddTo(ResponseCache::Stats& stats) const;

  // fork(): hold both mutexes across it; the child forgets the parent's flights (their leaders
  // are the parent's callers), so its own callers never wait on them.
  void LockForFork() ABSL_NO_THREAD_SAFETY_ANALYSIS;
  void UnlockAfterFork(bool in_child) ABSL_NO_THREAD_SAFETY_ANALYSIS;

 private:
  struct Stored {
    std::string canonical;  // compared on a hit: a digest collision never serves another's answer
    std::shared_ptr<const CachedResponse> value;
    int64_t expires = 0;
  };
  using Policy = WTinyLfu<Stored>;

  // Lookup under mu_; `bytes` gets a hit's charge.
  std::shared_ptr<const CachedResponse> LookupLocked(const CacheKey& key, const Digest& digest,
                                                     int64_t now, int64_t& bytes);
  // Follows the tuner's window share when it changed.
  void FollowTuner() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const int64_t capacity_;
  const std::shared_ptr<WindowTuner> tuner_;  // null without admission
  mutable Mutex mu_;
  Policy policy_ ABSL_GUARDED_BY(mu_);
  double window_share_ ABSL_GUARDED_BY(mu_);
  ResponseCache::Stats stats_ ABSL_GUARDED_BY(mu_);

  const Clock* const clock_;
  const absl::Duration default_ttl_;
  const bool store_tool_calls_;
  const std::shared_ptr<CacheTier> tier_;  // null: in process only
  std::atomic<int64_t> skipped_tool_calls_{0};
  // Flights, under their own mutex (taken before mu_ when both are held).
  Mutex flights_mu_;
  absl::flat_hash_map<std::pair<uint64_t, uint64_t>, std::shared_ptr<Flight>> flights_
      ABSL_GUARDED_BY(flights_mu_);
  std::atomic<int64_t> merged_{0}, failovers_{0};
};

}  // namespace internal
}  // namespace v1
}  // namespace sluice

#endif  // SLUICE_LIB_CACHE_SHARD_H_
