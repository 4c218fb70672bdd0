// Internal: a process-scope table from 128-bit key digests to a block of int64 cells per key,
// each key's cells used under its shard's mutex.
//
// For state that one compare-and-swap cannot update (the exact sliding window's ring of
// timestamps: admitting writes `cost` entries and moves a head). KeyedTable (keyed_table.h) stays
// lock-free for GCRA's one word per window; here a decision is a few dozen nanoseconds of work on
// one key, so a mutex per shard (64 shards, by the digest's top bits) costs little and keeps
// the block consistent. Blocks are allocated per key, zero-filled: all zeros is a fresh key.
//
// Memory follows the live keys: idle keys (as the caller's IdleFn says) are dropped by DropIdle,
// and, when the table holds max_keys keys, before a new key is refused (ResourceExhausted) every
// shard is swept, at most once per millisecond of the callers' clock (a flood of new keys would
// otherwise cost a full sweep each).
//
// fork(): every shard mutex is held across the fork (no block is caught mid-update), and the
// child's are fresh.
#ifndef SLUICE_LIB_STORES_LOCKED_TABLE_H_
#define SLUICE_LIB_STORES_LOCKED_TABLE_H_

#include <atomic>
#include <cstdint>
#include <memory>

#include "absl/container/flat_hash_map.h"
#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "base/fork_hooks.h"
#include "sluice/internal/key_digest.h"
#include "sluice/internal/mutex.h"

namespace sluice {
inline namespace v1 {
namespace internal {

class LockedTable {
 public:
  // May the key whose cells these are be dropped? Called under the key's shard lock.
  using IdleFn = absl::FunctionRef<bool(const int64_t* cells)>;
  using CellsFn = absl::FunctionRef<void(int64_t* cells)>;

  // REQUIRES: cells_per_key >= 1, max_keys >= 1.
  LockedTable(int cells_per_key, int64_t max_keys);
  ~LockedTable();
  LockedTable(const LockedTable&) = delete;
  LockedTable& operator=(const LockedTable&) = delete;

  // Runs `fn` on the cells of `digest` under its shard's lock, inserting them (zeroed) if the key
  // is new. ResourceExhausted if it is new and max_keys keys that are not idle leave no room.
  // `now_nanos` paces the full sweeps.
  absl::Status Visit(const KeyDigest& digest, int64_t now_nanos, IdleFn idle, CellsFn fn);
  // Runs `fn` on the cells of `digest` under its shard's lock if the key is present.
  bool VisitExisting(const KeyDigest& digest, CellsFn fn);
  // Drops every idle key; returns how many.
  int64_t DropIdle(IdleFn idle);

  int64_t size() const { return live_keys_.load(std::memory_order_relaxed); }
  int64_t memory_bytes() const;

 private:
  struct DigestHash {
    size_t operator()(const KeyDigest& d) const { return d.lo; }  // already uniform
  };
  using Cells = std::unique_ptr<int64_t[]>;
  struct alignas(64) Shard {
    Mutex mu;
    absl::flat_hash_map<KeyDigest, Cells, DigestHash> keys;  // guarded by mu
  };
  static constexpr int kShardBits = 6;
  static constexpr int kShards = 1 << kShardBits;

  Shard& ShardFor(const KeyDigest& d) { return shards_[d.hi >> (64 - kShardBits)]; }
  // Drops the idle keys of one shard. REQUIRES: shard.mu held.
  int64_t DropIdleLocked(Shard& shard, IdleFn idle);
  void LockForFork();
  void UnlockAfterFork(bool in_child);

  const int cells_;
  const int64_t max_keys_;
  std::atomic<int64_t> live_keys_{0};
  std::atomic<int64_t> last_full_sweep_nanos_;
  std::unique_ptr<Shard[]> shards_;
  std::unique_ptr<ForkHooks> fork_hooks_;  // registered last, unregistered first
};

}  // namespace internal
}  // namespace v1
}  // namespace sluice

#endif  // SLUICE_LIB_STORES_LOCKED_TABLE_H_
