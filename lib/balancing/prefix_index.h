// The balancer's approximate record of which endpoint holds which prompt prefix in its KV cache:
// the chained block hashes it routed to each endpoint, bounded per endpoint (LRU).
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

  struct Match {
    int64_t blocks = 0;   // leading blocks held
    uint64_t holders = 0; // slots (within the asked mask) that hold all of them
  };

  // The longest run of leading `blocks` held by some slot in `mask`. Because block i's hash
  // covers blocks 0..i and Touch keeps a path's shallow blocks the most recent, "held" is
  // monotone along a request's blocks, so a binary search needs O(log n) lookups.
  Match LongestMatch(absl::Span<const uint64_t> blocks, uint64_t mask) const;

  // Whether the first `matched` of `blocks` (matched >= 1) are a prefix that other requests
  // branched off from, such as a shared system prompt: true when the index saw a request go on
  // from blocks[matched - 1] with a full block other than blocks[matched], or saw two requests end
  // right after it with different last blocks. A request's last block may be partial, and its
  // next turn replaces it, so one such ending alone is no branch (else every conversation's
  // next turn would look like a new conversation). A match that ends at a branch holds only what
  // several conversations share; it says nothing about where this one lives.
  bool BranchesAt(absl::Span<const uint64_t> blocks, int64_t matched) const;

  // Records that `slot` now holds `blocks` (and each block's successor in them), then evicts its
  // least recently touched blocks beyond `capacity`.
  void Touch(int slot, absl::Span<const uint64_t> blocks, int64_t capacity);

  // Forgets everything `slot` holds.
  void Drop(int slot);

  int64_t size(int slot) const { return slots_[slot].held; }

 private:
  struct SlotLru {
    // block -> last touch, for the blocks this slot holds whose BlockInfo keeps another slot's
    // stamp (see BlockInfo::owner).
    absl::flat_hash_map<uint64_t, uint64_t> stamps;
    std::deque<std::pair<uint64_t, uint64_t>> order;    // (block, stamp), oldest first; stale
                                                        // entries (re-touched since) are skipped
    uint64_t clock = 0;
    int64_t held = 0;  // blocks held
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
    bool successors = false; // two different full blocks followed it
    bool lasts = false;      // two different request-ending blocks followed it
  };

  uint64_t HoldersOf(uint64_t block, uint64_t mask) const;
  // The last touch of `block` by `slot`, which holds it (info is its BlockInfo).
  uint64_t& StampOf(BlockInfo& info, SlotLru& lru, int slot, uint64_t block);
  static void RecordSuccessor(BlockInfo& info, uint64_t next, bool ends_request);
  void Evict(int slot, int64_t capacity);

  absl::flat_hash_map<uint64_t, BlockInfo> blocks_;
  std::array<SlotLru, kMaxSlots> slots_;
};

}  // namespace internal
}  // namespace v1
}  // namespace sluice

#endif  // SLUICE_LIB_PREFIX_INDEX_H_
