// PrefixIndex against a reference: the index as it was before issue 15 (one block -> stamp map
// per slot), replayed over random paths that share prefixes, held by several slots at once,
// evicted, re-touched and dropped. Issue 15 moved one holder's stamp into the block's own entry
// (one hash-map probe per block instead of two); which blocks each slot holds must not change.
#include <catch2/catch.hpp>

#include <array>
#include <cstdint>
#include <deque>
#include <map>
#include <random>
#include <set>
#include <utility>
#include <vector>

#include "balancing/prefix_index.h"

using sluice::internal::PrefixIndex;

namespace {

// The pre-issue-15 LRU rules, written plainly: per slot, block -> last touch, and the queue of
// touches; a re-touch within a quarter of the capacity is skipped, as is a path whose deepest
// block is that young; eviction takes the oldest live touch first.
class ReferenceLru {
 public:
  void Touch(int slot, const std::vector<uint64_t>& blocks, int64_t capacity) {
    Slot& s = slots_[static_cast<size_t>(slot)];
    const uint64_t young = static_cast<uint64_t>(std::max<int64_t>(1, capacity / 4));
    if (blocks.empty()) return;
    if (auto deepest = s.stamps.find(blocks.back());
        deepest != s.stamps.end() && s.clock - deepest->second < young) {
      return;
    }
    for (size_t i = blocks.size(); i-- > 0;) {
      const uint64_t stamp = ++s.clock;
      auto [it, inserted] = s.stamps.try_emplace(blocks[i], stamp);
      if (!inserted) {
        if (stamp - it->second < young) continue;
        it->second = stamp;
      }
      s.order.emplace_back(blocks[i], stamp);
    }
    while (static_cast<int64_t>(s.stamps.size()) > capacity && !s.order.empty()) {
      const auto [block, stamp] = s.order.front();
      s.order.pop_front();
      auto it = s.stamps.find(block);
      if (it != s.stamps.end() && it->second == stamp) s.stamps.erase(it);
    }
  }
  void Drop(int slot) { slots_[static_cast<size_t>(slot)] = Slot(); }
  const std::map<uint64_t, uint64_t>& Held(int slot) const {
    return slots_[static_cast<size_t>(slot)].stamps;
  }

 private:
  struct Slot {
    std::map<uint64_t, uint64_t> stamps;
    std::deque<std::pair<uint64_t, uint64_t>> order;
    uint64_t clock = 0;
  };
  std::array<Slot, PrefixIndex::kMaxSlots> slots_;
};

// Replays `steps` random touches (and, with `drops`, a drop one step in 50) over `slots` slots
// and checks, after each, that every slot holds exactly the reference's blocks. From step
// `shrink_at` on, the capacity is `shrunk`.
void Replay(uint32_t seed, int slots, int64_t capacity, int paths, int steps, bool drops,
            int shrink_at = -1, int64_t shrunk = 0) {
  std::mt19937 rng(seed);
  PrefixIndex index;
  ReferenceLru reference;
  std::set<uint64_t> seen;
  // Paths share a root of 1-6 blocks (a system prompt) from a pool of 3, then go their own way.
  std::vector<std::vector<uint64_t>> pool;
  for (int p = 0; p < paths; ++p) {
    const uint64_t root = rng() % 3;
    const size_t shared = 1 + rng() % 6, length = shared + rng() % 24;
    std::vector<uint64_t> blocks;
    for (size_t i = 0; i < length; ++i) {
      blocks.push_back(i < shared ? (root + 1) * 1000 + i : (uint64_t{1} << 32) * (p + 1) + i);
      seen.insert(blocks.back());
    }
    pool.push_back(std::move(blocks));
  }
  for (int step = 0; step < steps; ++step) {
    const int slot = static_cast<int>(rng() % static_cast<uint32_t>(slots));
    if (step == shrink_at) capacity = shrunk;
    if (drops && rng() % 50 == 0) {
      index.Drop(slot);
      reference.Drop(slot);
    } else {
      std::vector<uint64_t> blocks = pool[rng() % pool.size()];
      blocks.resize(1 + rng() % blocks.size());  // an earlier turn: a prefix of the path
      index.Touch(slot, blocks, capacity);
      reference.Touch(slot, blocks, capacity);
    }
    for (int s = 0; s < slots; ++s) {
      INFO("seed " << seed << ", step " << step << ", slot " << s);
      REQUIRE(index.size(s) == static_cast<int64_t>(reference.Held(s).size()));
      for (uint64_t block : seen) {
        const uint64_t one[] = {block};
        const bool held = index.LongestMatch(one, uint64_t{1} << s).blocks == 1;
        REQUIRE(held == (reference.Held(s).count(block) == 1));
      }
    }
  }
}

}  // namespace

TEST_CASE("prefix index: blocks shared by several slots are held and evicted per slot as before") {
  for (uint32_t seed = 1; seed <= 4; ++seed) Replay(seed, 5, 20, 40, 1500, /*drops=*/true);
}

TEST_CASE("prefix index: a slot re-touching paths without evicting keeps its blocks (queue rebuilt)") {
  // A capacity above every block in play (at most 306): no eviction, so stale queue entries pile
  // up past the rebuild threshold (twice the blocks held + 1024) many times over. Then a smaller
  // capacity evicts in the rebuilt queue's order.
  Replay(7, 3, 400, 12, 6000, /*drops=*/false, 4500, 40);
}

TEST_CASE("prefix index: a dropped slot's shared blocks stay with the other holders") {
  PrefixIndex index;
  const std::vector<uint64_t> path = {11, 12, 13, 14};
  index.Touch(0, path, 100);  // slot 0 holds the blocks' stamps in their entries
  index.Touch(1, path, 100);
  index.Touch(2, {11, 12, 99}, 100);
  index.Drop(0);
  CHECK(index.size(0) == 0);
  CHECK(index.LongestMatch(path, 1).blocks == 0);
  CHECK(index.LongestMatch(path, 2).blocks == 4);
  CHECK(index.LongestMatch(path, 4).blocks == 2);
  // Slot 0 again (an endpoint added in the removed one's place) starts empty and fills.
  index.Touch(0, {11, 50}, 100);
  CHECK(index.size(0) == 2);
  CHECK(index.LongestMatch(path, 1).blocks == 1);
  // Slot 1 evicts oldest first: its deepest blocks, 14 then 13 (touched before 12 and 11).
  index.Touch(1, {70}, 3);
  CHECK(index.size(1) == 3);
  CHECK(index.LongestMatch(path, 2).blocks == 2);
  CHECK(index.LongestMatch(path, 4).blocks == 2);
}

namespace {

// The hashes an index of `group`-block groups keys a request by: each group's last block.
std::vector<uint64_t> GroupEnds(const std::vector<uint64_t>& blocks, size_t group) {
  std::vector<uint64_t> ends;
  for (size_t end = group; end < blocks.size() + group; end += group) {
    ends.push_back(blocks[std::min(end, blocks.size()) - 1]);
  }
  return ends;
}

// Replays random touches and drops into an index of 4-block groups and into a 1-block index fed
// only the group ends, and checks that they agree on every match, holder set and branch. With
// `whole_groups`, every request is whole groups, so each group holds 4 blocks and the grouped
// index's capacity of 4 x `capacity` blocks evicts exactly as the other's `capacity` does.
void ReplayGrouped(uint32_t seed, int64_t capacity, bool whole_groups) {
  constexpr size_t kGroup = 4;
  std::mt19937 rng(seed);
  PrefixIndex grouped(kGroup), ends_only(1);
  std::vector<std::vector<uint64_t>> pool;
  for (int p = 0; p < 30; ++p) {
    const uint64_t root = rng() % 3;
    const size_t shared = 1 + rng() % 10, length = std::max(kGroup, shared + rng() % 30);
    std::vector<uint64_t> blocks;
    for (size_t i = 0; i < length; ++i) {
      blocks.push_back(i < shared ? (root + 1) * 1000 + i : (uint64_t{1} << 32) * (p + 1) + i);
    }
    pool.push_back(std::move(blocks));
  }
  auto request = [&](size_t path) {
    std::vector<uint64_t> blocks = pool[path];
    const size_t length = 1 + rng() % blocks.size();
    blocks.resize(whole_groups ? std::max(kGroup, length / kGroup * kGroup) : length);
    return blocks;
  };
  for (int step = 0; step < 2000; ++step) {
    const int slot = static_cast<int>(rng() % 4);
    if (rng() % 60 == 0) {
      grouped.Drop(slot);
      ends_only.Drop(slot);
    } else {
      const std::vector<uint64_t> blocks = request(rng() % pool.size());
      grouped.Touch(slot, blocks, capacity * static_cast<int64_t>(kGroup));
      ends_only.Touch(slot, GroupEnds(blocks, kGroup), capacity);
    }
    const std::vector<uint64_t> asked = request(rng() % pool.size());
    const std::vector<uint64_t> asked_ends = GroupEnds(asked, kGroup);
    const uint64_t mask = rng() % 16;
    INFO("seed " << seed << ", step " << step << ", mask " << mask);
    const PrefixIndex::Match fine = grouped.LongestMatch(asked, mask);
    const PrefixIndex::Match coarse = ends_only.LongestMatch(asked_ends, mask);
    REQUIRE(fine.holders == coarse.holders);
    REQUIRE(fine.blocks ==
            (coarse.blocks == 0 ? 0
                                : std::min<int64_t>(coarse.blocks * kGroup,
                                                    static_cast<int64_t>(asked.size()))));
    if (coarse.blocks > 0) {
      REQUIRE(grouped.BranchesAt(asked, fine.blocks) ==
              ends_only.BranchesAt(asked_ends, coarse.blocks));
    }
    if (whole_groups) {
      for (int s = 0; s < 4; ++s) REQUIRE(grouped.size(s) == ends_only.size(s) * 4);
    }
  }
}

}  // namespace

TEST_CASE("prefix index: groups of 4 blocks behave as an index of the groups' last blocks") {
  for (uint32_t seed = 1; seed <= 3; ++seed) {
    ReplayGrouped(seed, /*capacity=*/1 << 20, /*whole_groups=*/false);  // partial last groups
    ReplayGrouped(seed, /*capacity=*/12, /*whole_groups=*/true);        // evicting
  }
}

TEST_CASE("prefix index: a grouped index counts a partial last group's blocks, not the group's") {
  PrefixIndex index(4);
  index.Touch(0, {1, 2, 3, 4, 5, 6}, 100);  // a whole group and a partial one of 2 blocks
  CHECK(index.size(0) == 6);
  const std::vector<uint64_t> next = {1, 2, 3, 4, 5, 16, 17, 18, 19};
  CHECK(index.LongestMatch(next, 1).blocks == 4);  // the partial group's end (6) is not next's
  CHECK(index.LongestMatch({1, 2, 3, 4, 5, 6}, 1).blocks == 6);
  // At most 7 blocks: the next request's 8 evict the oldest groups until 7 or fewer remain.
  index.Touch(0, {21, 22, 23, 24, 25, 26, 27, 28}, 7);
  CHECK(index.size(0) == 4);
}
