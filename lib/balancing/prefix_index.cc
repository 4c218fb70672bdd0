#include "balancing/prefix_index.h"

#include <algorithm>
#include <deque>
#include <utility>

namespace sluice {
inline namespace v1 {
namespace internal {

uint64_t PrefixIndex::HoldersOf(uint64_t block, uint64_t mask) const {
  auto it = blocks_.find(block);
  return it == blocks_.end() ? 0 : (it->second.holders & mask);
}

bool PrefixIndex::BranchesAt(absl::Span<const uint64_t> blocks, int64_t matched) const {
  if (matched < 1 || matched > static_cast<int64_t>(blocks.size())) return false;
  auto it = blocks_.find(blocks[static_cast<size_t>(matched) - 1]);
  if (it == blocks_.end()) return false;
  const BlockInfo& info = it->second;
  // 0 stands for "the request ends here": any full successor then differs from it.
  const uint64_t next = matched < static_cast<int64_t>(blocks.size()) ? blocks[static_cast<size_t>(matched)] : 0;
  return info.successors || info.lasts || (info.successor != 0 && info.successor != next);
}

void PrefixIndex::RecordSuccessor(BlockInfo& info, uint64_t next, bool ends_request) {
  uint64_t& first = ends_request ? info.last : info.successor;
  bool& several = ends_request ? info.lasts : info.successors;
  if (first == 0) {
    first = next;
  } else if (first != next) {
    several = true;
  }
}

PrefixIndex::Match PrefixIndex::LongestMatch(absl::Span<const uint64_t> blocks,
                                             uint64_t mask) const {
  if (blocks.empty() || mask == 0) return {};
  uint64_t held = HoldersOf(blocks[0], mask);
  if (held == 0) return {};
  // Invariant: blocks[lo] is held by `held`; blocks[hi] is not held (or hi is the end).
  size_t lo = 0, hi = blocks.size();
  while (hi - lo > 1) {
    const size_t mid = lo + (hi - lo) / 2;
    if (const uint64_t h = HoldersOf(blocks[mid], mask); h != 0) {
      lo = mid;
      held = h;
    } else {
      hi = mid;
    }
  }
  return {static_cast<int64_t>(lo) + 1, held};
}

uint64_t& PrefixIndex::StampOf(BlockInfo& info, SlotLru& lru, int slot, uint64_t block) {
  return info.owner == slot ? info.owner_stamp : lru.stamps.find(block)->second;
}

void PrefixIndex::Touch(int slot, absl::Span<const uint64_t> blocks, int64_t capacity) {
  SlotLru& lru = slots_[slot];
  const uint64_t bit = uint64_t{1} << slot;
  // A block touched within the last quarter of the capacity is young enough: skipping its
  // re-touch keeps a repeated prompt cheap and cannot get it evicted before older blocks.
  const uint64_t young = static_cast<uint64_t>(std::max<int64_t>(1, capacity / 4));
  if (blocks.empty()) return;
  // Block i's hash covers blocks 0..i, so whoever last touched the deepest block touched this
  // whole path then (or found it younger still). If that was recent, the path is young: done.
  if (auto deepest = blocks_.find(blocks.back());
      deepest != blocks_.end() && (deepest->second.holders & bit) != 0 &&
      lru.clock - StampOf(deepest->second, lru, slot, blocks.back()) < young) {
    return;
  }
  // Deepest first, so a path's shallow blocks end up the most recent and are evicted last.
  for (size_t i = blocks.size(); i-- > 0;) {
    BlockInfo& info = blocks_[blocks[i]];
    if (i + 1 < blocks.size()) RecordSuccessor(info, blocks[i + 1], i + 2 == blocks.size());
    const uint64_t stamp = ++lru.clock;
    if ((info.holders & bit) == 0) {
      info.holders |= bit;
      ++lru.held;
      if (info.owner < 0) {
        info.owner = static_cast<int8_t>(slot);
        info.owner_stamp = stamp;
      } else {
        lru.stamps.insert_or_assign(blocks[i], stamp);
      }
    } else if (uint64_t& last = StampOf(info, lru, slot, blocks[i]); stamp - last >= young) {
      last = stamp;
    } else {
      continue;
    }
    lru.order.emplace_back(blocks[i], stamp);
  }
  Evict(slot, capacity);
}

void PrefixIndex::Evict(int slot, int64_t capacity) {
  SlotLru& lru = slots_[slot];
  const uint64_t bit = uint64_t{1} << slot;
  while (lru.held > capacity && !lru.order.empty()) {
    const auto [block, stamp] = lru.order.front();
    lru.order.pop_front();
    auto it = blocks_.find(block);
    if (it == blocks_.end() || (it->second.holders & bit) == 0) continue;  // evicted already
    BlockInfo& info = it->second;
    if (info.owner == slot) {
      if (info.owner_stamp != stamp) continue;  // re-touched since
      info.owner = -1;
    } else {
      auto own = lru.stamps.find(block);
      if (own->second != stamp) continue;  // re-touched since
      lru.stamps.erase(own);
    }
    --lru.held;
    if ((info.holders &= ~bit) == 0) blocks_.erase(it);
  }
  // Stale entries pile up when blocks are re-touched without evictions; drop them once the queue
  // is twice as long as it needs to be. Every stamp a slot gives is queued, so the live entries
  // are the queue's entries whose stamp is still the block's, already oldest first.
  if (lru.order.size() > 2 * static_cast<size_t>(lru.held) + 1024) {
    std::deque<std::pair<uint64_t, uint64_t>> live;
    for (const auto& [block, stamp] : lru.order) {
      auto it = blocks_.find(block);
      if (it != blocks_.end() && (it->second.holders & bit) != 0 &&
          StampOf(it->second, lru, slot, block) == stamp) {
        live.emplace_back(block, stamp);
      }
    }
    lru.order = std::move(live);
  }
}

void PrefixIndex::Drop(int slot) {
  SlotLru& lru = slots_[slot];
  const uint64_t bit = uint64_t{1} << slot;
  // Every block the slot holds is in its queue (with its stale entries, which find it gone).
  for (const auto& [block, stamp] : lru.order) {
    auto info = blocks_.find(block);
    if (info == blocks_.end() || (info->second.holders & bit) == 0) continue;
    if (info->second.owner == slot) info->second.owner = -1;
    if ((info->second.holders &= ~bit) == 0) blocks_.erase(info);
  }
  lru = SlotLru();
}

}  // namespace internal
}  // namespace v1
}  // namespace sluice
