// Internal: the process-scope state behind ConcurrencyLimiter: per key, the leases granted.
//
// Unlike the GCRA objects, a concurrency key carries a set (which leases, until when), so each
// shard is a mutex over a flat_hash_map. Acquire and release are rare compared with rate
// decisions (one pair per request lifetime), and the critical sections are a few map operations.

#ifndef SLUICE_LIB_LEASE_TABLE_H_
#define SLUICE_LIB_LEASE_TABLE_H_

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>

#include "sluice/internal/mutex.h"

#include "absl/container/flat_hash_map.h"
#include "base/fork_hooks.h"
#include "stores/lease_store.h"
#include "sluice/internal/key_digest.h"

namespace sluice {
inline namespace v1 {
namespace internal {

class LeaseTable final : public LeaseStore {
 public:
  explicit LeaseTable(int64_t max_keys);
  ~LeaseTable() override;

  Grant Acquire(const KeyDigest& d, int64_t max_in_flight, int64_t now,
                int64_t expires_at) override;
  bool Release(const KeyDigest& d, uint64_t lease_id, int64_t expires_at) override;
  bool Renew(const KeyDigest& d, uint64_t lease_id, int64_t expires_at,
             int64_t new_expires_at) override;
  int64_t InFlight(const KeyDigest& d, int64_t now) override;
  int64_t ReclaimExpired(int64_t now) override;

 private:
  struct DigestHash {
    size_t operator()(const KeyDigest& d) const { return d.lo; }
  };
  using Leases = absl::flat_hash_map<uint64_t, int64_t>;  // lease id -> expires at
  struct alignas(64) Shard {
    Mutex mu;
    absl::flat_hash_map<KeyDigest, Leases, DigestHash> keys;  // guarded by mu
  };
  static constexpr int kShardBits = 4;

  Shard& ShardFor(const KeyDigest& d) { return shards_[d.hi >> (64 - kShardBits)]; }
  // fork(): the shard mutexes are held across the fork (no map is caught mid-update) and the
  // child's are fresh.
  void LockForFork();
  void UnlockAfterFork(bool in_child);
  // Removes the expired leases of one key; returns how many.
  static int64_t ReclaimLocked(Leases& leases, int64_t now);

  const int64_t max_keys_;
  std::atomic<int64_t> live_keys_{0};
  std::atomic<uint64_t> next_lease_id_{1};
  std::unique_ptr<Shard[]> shards_;
  std::unique_ptr<ForkHooks> fork_hooks_;  // registered last, unregistered first
};

}  // namespace internal
}  // namespace v1
}  // namespace sluice

#endif  // SLUICE_LIB_LEASE_TABLE_H_
