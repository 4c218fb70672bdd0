#include "balancing/prefix_index.h"

#include <algorithm>
#include <deque>
#include <utility>

#include "absl/base/internal/raw_logging.h"

namespace sluice {
inline namespace v1 {
namespace internal {

PrefixIndex::PrefixIndex(int64_t group_blocks) : group_blocks_(group_blocks) {
  ABSL_RAW_CHECK(group_blocks >= 1 && group_blocks <= 64,
                 "PrefixIndex: group_blocks must be in [1, 64]");
}

size_t PrefixIndex::GroupsIn(size_t blocks) const {
  const size_t g = static_cast<size_t>(group_blocks_);
  return (blocks + g - 1) / g;
}

size_t PrefixIndex::GroupEnd(size_t group, size_t blocks) const {
  return std::min((group + 1) * static_cast<size_t>(group_blocks_), blocks) - 1;
}

uint64_t PrefixIndex::HoldersOf(uint64_t block, uint64_t mask) const {
  auto it = blocks_.find(block);
  return it == blocks_.end() ? 0 : (it->second.holders & mask);
}

bool PrefixIndex::BranchesAt(absl::Span<const uint64_t> blocks, int64_t matched) const {
  if (matched < 1 || matched > static_cast<int64_t>(blocks.size())) return false;
  // The group ending at blocks[matched - 1], or the last full group before it.
  const size_t n = blocks.size();
  size_t group = static_cast<size_t>(matched) / static_cast<size_t>(group_blocks_);
  if (static_cast<size_t>(matched) == n) {
    group = GroupsIn(n);
  } else if (group == 0) {
    return false;
  }
  --group;
  auto it = blocks_.find(blocks[GroupEnd(group, n)]);
  if (it == blocks_.end()) return false;
  const BlockInfo& info = it->second;
  // 0 stands for "the request ends here": any full successor then differs from it.
  const uint64_t next = group + 1 < GroupsIn(n) ? blocks[GroupEnd(group + 1, n)] : 0;
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
  const size_t n = blocks.size();
  uint64_t held = HoldersOf(blocks[GroupEnd(0, n)], mask);
  if (held == 0) return {};
  // Invariant: group lo is held by `held`; group hi is not held (or hi is the end).
  size_t lo = 0, hi = GroupsIn(n);
  while (hi - lo > 1) {
    const size_t mid = lo + (hi - lo) / 2;
    if (const uint64_t h = HoldersOf(blocks[GroupEnd(mid, n)], mask); h != 0) {
      lo = mid;
      held = h;
    } else {
      hi = mid;
    }
  }
  return {static_cast<int64_t>(GroupEnd(lo, n)) + 1, held};
}

uint64_t& PrefixIndex::StampOf(BlockInfo& info, SlotLru& lru, int slot, uint64_t block) {
  return info.owner == slot ? info.owner_stamp : lru.stamps.find(block)->second;
}

void PrefixIndex::Touch(int slot, absl::Span<const uint64_t> blocks, int64_t capacity) {
  SlotLru& lru = slots_[slot];
  const uint64_t bit = uint64_t{1} << slot;
  // A group touched within the last quarter of the capacity (counted in groups, as stamps are)
  // is young enough: skipping its re-touch keeps a repeated prompt cheap and cannot get it
  // evicted before older groups.
  const uint64_t young = static_cast<uint64_t>(std::max<int64_t>(1, capacity / group_blocks_ / 4));
  if (blocks.empty()) return;
  // Block i's hash covers blocks 0..i, so whoever last touched the deepest block touched this
  // whole path then (or found it younger still). If that was recent, the path is young: done.
  if (auto deepest = blocks_.find(blocks.back());
      deepest != blocks_.end() && (deepest->second.holders & bit) != 0 &&
      lru.clock - StampOf(deepest->second, lru, slot, blocks.back()) < young) {
    return;
  }
  // Deepest first, so a path's shallow groups end up the most recent and are evicted last.
  const size_t n = blocks.size();
  const size_t groups = GroupsIn(n);
  for (size_t g = groups; g-- > 0;) {
    const uint64_t key = blocks[GroupEnd(g, n)];
    BlockInfo& info = blocks_[key];
    if (g + 1 < groups) RecordSuccessor(info, blocks[GroupEnd(g + 1, n)], g + 2 == groups);
    const uint64_t stamp = ++lru.clock;
    if ((info.holders & bit) == 0) {
      info.holders |= bit;
      info.span = static_cast<uint8_t>(GroupEnd(g, n) - g * static_cast<size_t>(group_blocks_) + 1);
      lru.held += info.span;
      if (info.owner < 0) {
        info.owner = static_cast<int8_t>(slot);
        info.owner_stamp = stamp;
      } else {
        lru.stamps.insert_or_assign(key, stamp);
      }
    } else if (uint64_t& last = StampOf(info, lru, slot, key); stamp - last >= young) {
      last = stamp;
    } else {
      continue;
    }
    lru.order.emplace_back(key, stamp);
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
    lru.held -= info.span;
    if ((info.holders &= ~bit) == 0) blocks_.erase(it);
  }
  // Stale entries pile up when groups are re-touched without evictions; drop them once the queue
  // is about twice as long as it needs to be (a group holds up to group_blocks of the held
  // blocks). Every stamp a slot gives is queued, so the live entries are the queue's entries
  // whose stamp is still the group's, already oldest first.
  if (lru.order.size() > 2 * static_cast<size_t>(lru.held / group_blocks_) + 1024) {
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
