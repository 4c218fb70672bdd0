#include "balancing/prefix_index.h"

#include <algorithm>
#include <vector>

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

void PrefixIndex::Touch(int slot, absl::Span<const uint64_t> blocks, int64_t capacity) {
  SlotLru& lru = slots_[slot];
  const uint64_t bit = uint64_t{1} << slot;
  // A block touched within the last quarter of the capacity is young enough: skipping its
  // re-touch keeps a repeated prompt cheap and cannot get it evicted before older blocks.
  const uint64_t young = static_cast<uint64_t>(std::max<int64_t>(1, capacity / 4));
  if (blocks.empty()) return;
  // Block i's hash covers blocks 0..i, so whoever last touched the deepest block touched this
  // whole path then (or found it younger still). If that was recent, the path is young: done.
  if (auto deepest = lru.stamps.find(blocks.back());
      deepest != lru.stamps.end() && lru.clock - deepest->second < young) {
    return;
  }
  // Deepest first, so a path's shallow blocks end up the most recent and are evicted last.
  for (size_t i = blocks.size(); i-- > 0;) {
    BlockInfo& info = blocks_[blocks[i]];
    if (i + 1 < blocks.size()) RecordSuccessor(info, blocks[i + 1], i + 2 == blocks.size());
    const uint64_t stamp = ++lru.clock;
    auto [it, inserted] = lru.stamps.try_emplace(blocks[i], stamp);
    if (inserted) {
      info.holders |= bit;
    } else if (stamp - it->second >= young) {
      it->second = stamp;
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
  while (static_cast<int64_t>(lru.stamps.size()) > capacity && !lru.order.empty()) {
    const auto [block, stamp] = lru.order.front();
    lru.order.pop_front();
    auto it = lru.stamps.find(block);
    if (it == lru.stamps.end() || it->second != stamp) continue;  // re-touched since
    lru.stamps.erase(it);
    auto info = blocks_.find(block);
    if (info != blocks_.end() && (info->second.holders &= ~bit) == 0) blocks_.erase(info);
  }
  // Stale entries pile up when blocks are re-touched without evictions; rebuild the queue from
  // the live stamps once it is twice as long as it needs to be.
  if (lru.order.size() > 2 * lru.stamps.size() + 1024) {
    std::vector<std::pair<uint64_t, uint64_t>> live;  // (stamp, block)
    live.reserve(lru.stamps.size());
    for (const auto& [block, stamp] : lru.stamps) live.emplace_back(stamp, block);
    std::sort(live.begin(), live.end());
    lru.order.clear();
    for (const auto& [stamp, block] : live) lru.order.emplace_back(block, stamp);
  }
}

void PrefixIndex::Drop(int slot) {
  SlotLru& lru = slots_[slot];
  const uint64_t bit = uint64_t{1} << slot;
  for (const auto& [block, stamp] : lru.stamps) {
    auto info = blocks_.find(block);
    if (info != blocks_.end() && (info->second.holders &= ~bit) == 0) blocks_.erase(info);
  }
  lru = SlotLru();
}

}  // namespace internal
}  // namespace v1
}  // namespace sluice
