// The balancer's approximate record of which endpoint holds which prompt prefix in its KV cache:
// the chained block hashes it routed to each endpoint, bounded per endpoint (LRU).
//
// The index keys one hash per group of `group_blocks` consecutive blocks: the hash of the group's
// last block, which covers every block before it (and a request's trailing partial group is keyed
// by its last block). So it behaves exactly like an index of blocks `group_blocks` times as long,
// while callers keep the finer blocks: a new 8k-token conversation (256 blocks of 128 bytes)
// inserts 64 keys rather than 256, in a map a quarter the size (issue 15: each key is a cache
// miss, and they were most of a pick's cost). Matches are reported in blocks, at group ends.
#ifndef SLUICE_LIB_PREFIX_INDEX_H_
#define SLUICE_LIB_PREFIX_INDEX_H_

#include <array>
#include <cstdint>
#include <deque>
#include <utility>

#include "absl/container/flat_hash_map.h"
#include "absl/types/span.h"

namespace sluice {
inline namespace v1 {
namespace internal {

// Up to 64 endpoints, one bit each ("slot"). Not thread-safe: the Balancer's mutex guards it.
class PrefixIndex {
 public:
  static constexpr int kMaxSlots = 64;
  // The Balancer's grouping: 4 blocks of 128 bytes, 512 bytes (about 128 tokens) a key.
  static constexpr int64_t kDefaultGroupBlocks = 4;

  // Requires 1 <= group_blocks <= 64.
  explicit PrefixIndex(int64_t group_blocks = 1);

  struct Match {
    int64_t blocks = 0;   // leading blocks held
    uint64_t holders = 0; // slots (within the asked mask) that hold all of them
  };

  // The longest run of leading `blocks` held by some slot in `mask`, ending at a group's end (a
  // multiple of group_blocks, or all of `blocks`). Because block i's hash covers blocks 0..i and
  // Touch keeps a path's shallow groups the most recent, "held" is monotone along a request's
  // groups, so a binary search needs O(log n) lookups.
  Match LongestMatch(absl::Span<const uint64_t> blocks, uint64_t mask) const;

  // Whether the first `matched` of `blocks` (matched >= 1, a group's end as LongestMatch gives;
  // otherwise the group end before it is asked) are a prefix that other requests branched off
  // from, such as a shared system prompt: true when the index saw a request go on from that group
  // with a full group other than this request's next one, or saw two requests end in the group
  // right after it with different last groups. A request's last group may be partial, and its
  // next turn replaces it, so one such ending alone is no branch (else every conversation's
  // next turn would look like a new conversation). A match that ends at a branch holds only what
  // several conversations share; it says nothing about where this one lives.
  bool BranchesAt(absl::Span<const uint64_t> blocks, int64_t matched) const;

  // Records that `slot` now holds `blocks` (and each group's successor in them), then evicts its
  // least recently touched groups while it holds more than `capacity` blocks.
  void Touch(int slot, absl::Span<const uint64_t> blocks, int64_t capacity);

  // Forgets everything `slot` holds.
  void Drop(int slot);

  // Blocks `slot` holds.
  int64_t size(int slot) const { return slots_[slot].held; }

 private:
  struct SlotLru {
    // block -> last touch, for the blocks this slot holds whose BlockInfo keeps another slot's
    // stamp (see BlockInfo::owner).
    absl::flat_hash_map<uint64_t, uint64_t> stamps;
    std::deque<std::pair<uint64_t, uint64_t>> order;    // (block, stamp), oldest first; stale
                                                        // entries (re-touched since) are skipped
    uint64_t clock = 0;
    int64_t held = 0;  // blocks held (each group counts its blocks)
  };

  // What the index knows of one block: who holds it and which blocks followed it.
  struct BlockInfo {
    uint64_t holders = 0;    // slots holding it
    uint64_t successor = 0;  // the first full block seen after it (0: none yet)
    uint64_t last = 0;       // the first request-ending block seen after it (0: none yet)
    // One holder's last touch lives here, so that inserting or evicting a block held by one
    // slot (every block of a new conversation) costs one hash-map probe, not two in two maps
    // far larger than the CPU caches. The other holders' stamps are in their SlotLru::stamps.
    uint64_t owner_stamp = 0;
    int8_t owner = -1;       // that holder's slot; -1: none
    uint8_t span = 0;        // blocks in its group (group_blocks, or fewer for a partial last one)
    bool successors = false; // two different full blocks followed it
    bool lasts = false;      // two different request-ending blocks followed it
  };

  // Groups in a request of `blocks` blocks, and the index of group j's last block.
  size_t GroupsIn(size_t blocks) const;
  size_t GroupEnd(size_t group, size_t blocks) const;

  uint64_t HoldersOf(uint64_t block, uint64_t mask) const;
  // The last touch of `block` by `slot`, which holds it (info is its BlockInfo).
  uint64_t& StampOf(BlockInfo& info, SlotLru& lru, int slot, uint64_t block);
  static void RecordSuccessor(BlockInfo& info, uint64_t next, bool ends_request);
  void Evict(int slot, int64_t capacity);

  int64_t group_blocks_;
  absl::flat_hash_map<uint64_t, BlockInfo> blocks_;  // keyed by each group's last block
  std::array<SlotLru, kMaxSlots> slots_;
};

}  // namespace internal
}  // namespace v1
}  // namespace sluice

#endif  // SLUICE_LIB_PREFIX_INDEX_H_
