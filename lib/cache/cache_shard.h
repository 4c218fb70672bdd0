// One shard of the ResponseCache: a segmented LRU (probation, protected) within a byte budget,
// behind a TinyLFU admission filter, under one mutex.
#ifndef SLUICE_LIB_CACHE_SHARD_H_
#define SLUICE_LIB_CACHE_SHARD_H_

#include <atomic>
#include <cstdint>
#include <list>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "sluice/internal/mutex.h"
#include "cache/cache_tier.h"
#include "cache/flight.h"
#include "cache/frequency_sketch.h"
#include "sluice/response_cache.h"
#include "sluice/single_flight.h"

namespace sluice {
inline namespace v1 {
namespace internal {

class CacheShard;

class CacheShard : public std::enable_shared_from_this<CacheShard> {
 public:
  CacheShard(int64_t capacity_bytes, double protected_share, bool admission, const Clock* clock,
             absl::Duration default_ttl, bool store_tool_calls, std::shared_ptr<CacheTier> tier);

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
  struct Node {
    std::pair<uint64_t, uint64_t> digest;
    std::string canonical;
    std::shared_ptr<const CachedResponse> value;
    int64_t bytes = 0;
    int64_t expires = 0;
    int64_t promoted_at = 0;  // when it last moved to the front of protected
    bool is_protected = false;
  };
  using List = std::list<Node>;

  List& ListOf(const Node& n) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return n.is_protected ? protected_ : probation_;
  }
  void Remove(List::iterator it) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Moves a probation entry that was hit to protected; protected's oldest fall back to probation.
  // A protected entry moves to protected's front at most once per kPromotionInterval.
  void Promote(List::iterator it, int64_t now) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  static constexpr int64_t kPromotionInterval = 1'000'000'000;  // 1 s
  // The entry eviction would take next: probation's oldest, else protected's.
  List::iterator Victim() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const int64_t capacity_;
  const int64_t protected_capacity_;
  const bool admission_;
  mutable Mutex mu_;
  FrequencySketch sketch_ ABSL_GUARDED_BY(mu_);
  List probation_ ABSL_GUARDED_BY(mu_);  // front: most recently used
  List protected_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<std::pair<uint64_t, uint64_t>, List::iterator> index_ ABSL_GUARDED_BY(mu_);
  int64_t bytes_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t protected_bytes_ ABSL_GUARDED_BY(mu_) = 0;
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
