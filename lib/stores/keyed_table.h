// Internal: a concurrent table from 128-bit key digests to a few int64 cells per key.
//
// Why not a map behind a lock: on this hardware an uncontended Mutex reader lock costs
// about as much as the whole decision we want (~34 ns), so lookups take no lock at all:
//
//  * The table is sharded (64 shards by the digest's top bits), each an open-addressing array
//    [hi, lo, cell0, cell1, ...] per slot, linear probing, load factor <= 3/4.
//  * Readers announce themselves in the shard's reader count, probe, and run their function on the
//    slot's cells (which they update only with atomic operations).
//  * Writers (inserting a new key) take the shard's mutex. Inserting only fills an empty slot
//    and publishes its `hi` word last with release order, so concurrent readers either see the
//    whole slot or an empty one (and then retry under the mutex).
//  * Anything that moves or frees slots (growing, dropping idle keys) is "maintenance": under the
//    mutex, the writer raises the shard's maintenance flag, waits for the in-flight readers (each a
//    few nanoseconds of work) to leave, rebuilds, and lowers the flag. Readers that see the flag
//    go through the mutex instead. Slots are never deleted in place, so there are no tombstones.
//
// Idle keys (every cell back to "whole") are dropped at each rebuild, and all shards are swept
// when the live-key bound is reached, so memory follows the live keys, not the keys ever seen.

#ifndef SLUICE_LIB_KEYED_TABLE_H_
#define SLUICE_LIB_KEYED_TABLE_H_

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>

#include "sluice/internal/mutex.h"

#include "absl/base/thread_annotations.h"
#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "base/fork_hooks.h"
#include "sluice/internal/key_digest.h"

namespace sluice {
inline namespace v1 {
namespace internal {

class KeyedTable {
 public:
  // May the key whose cells these are be dropped? Called with readers excluded.
  using IdleFn = absl::FunctionRef<bool(const int64_t* cells)>;
  using CellsFn = absl::FunctionRef<void(int64_t* cells)>;

  static constexpr int kMaxCells = 8;

  // REQUIRES: 1 <= cells_per_key <= kMaxCells, max_keys >= 1.
  KeyedTable(int cells_per_key, int64_t max_keys, int64_t fresh_cell);
  ~KeyedTable();
  KeyedTable(const KeyedTable&) = delete;
  KeyedTable& operator=(const KeyedTable&) = delete;

  // Runs `fn` on the cells of `digest`, inserting the key (cells = fresh_cell) if it is absent.
  // `fn` must touch the cells only through std::atomic_ref. Inserting may drop idle keys (per
  // `idle`) to make room; `now_nanos` paces full sweeps when the table is at max_keys.
  // Returns ResourceExhausted if the key is new and no room can be made.
  template <typename Fn>
  absl::Status Visit(const KeyDigest& digest, int64_t now_nanos, IdleFn idle, Fn&& fn) {
    Shard& shard = ShardFor(digest);
    shard.readers.fetch_add(1, std::memory_order_seq_cst);
    if (shard.maintenance.load(std::memory_order_seq_cst) == 0) {
      if (int64_t* cells = Find(shard.table.load(std::memory_order_acquire), digest)) {
        fn(cells);
        shard.readers.fetch_sub(1, std::memory_order_release);
        return absl::OkStatus();
      }
    }
    shard.readers.fetch_sub(1, std::memory_order_release);
    return VisitSlow(shard, digest, now_nanos, idle, CellsFn(fn));
  }

  // Runs `fn` on the cells of `digest` if present. Returns whether it was.
  bool VisitExisting(const KeyDigest& digest, CellsFn fn);

  // Drops every idle key in every shard. Returns how many were dropped.
  int64_t DropIdle(IdleFn idle);

  int64_t size() const { return live_keys_.load(std::memory_order_relaxed); }
  int64_t memory_bytes() const;

 private:
  // fork(): the child resets what parent threads may have left behind: reader counts, the
  // maintenance flag and the shard mutexes. (No lock is taken before the fork: every shard is
  // consistent at any instant, see keyed_table.cc.)
  void ResetInForkChild();

  struct Table;
  struct alignas(64) Shard {
    std::atomic<int32_t> readers{0};
    std::atomic<int32_t> maintenance{0};
    std::atomic<Table*> table{nullptr};
    Mutex mu;
    int64_t used = 0;      // guarded by mu
  };

  static constexpr int kShardBits = 6;
  static constexpr int kShards = 1 << kShardBits;

  Shard& ShardFor(const KeyDigest& d) { return shards_[d.hi >> (64 - kShardBits)]; }
  int64_t* Find(Table* table, const KeyDigest& d) const;
  absl::Status VisitSlow(Shard& shard, const KeyDigest& d, int64_t now_nanos, IdleFn idle,
                         CellsFn fn);
  // Inserts `d` into `shard`, rebuilding first if the shard is too full. nullptr if at max_keys.
  // REQUIRES: shard.mu held.
  int64_t* InsertLocked(Shard& shard, const KeyDigest& d, IdleFn idle);
  // Rebuilds `shard` without its idle keys, sized for `extra` more. Returns keys dropped.
  // REQUIRES: shard.mu held.
  int64_t RebuildLocked(Shard& shard, IdleFn idle, int64_t extra);
  Table* NewTable(int64_t capacity) const;

  const int cells_;
  const int stride_;  // int64 words per slot: hi, lo, cells
  const int64_t max_keys_;
  const int64_t fresh_cell_;
  std::atomic<int64_t> live_keys_{0};
  std::atomic<int64_t> last_full_sweep_nanos_;
  std::unique_ptr<Shard[]> shards_;
  std::unique_ptr<ForkHooks> fork_hooks_;  // registered last, unregistered first
};

}  // namespace internal
}  // namespace v1
}  // namespace sluice

#endif  // SLUICE_LIB_KEYED_TABLE_H_
