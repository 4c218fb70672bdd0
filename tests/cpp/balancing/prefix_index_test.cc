// PrefixIndex against a reference: the index as it was before issue 15 (one block -> stamp map
// per slot), replayed over random paths that share prefixes, held by several slots at once,
// evicted, re-touched and dropped. Issue 15 moved one holder's stamp into the block's own entry
// (one hash-map probe per block instead of two), then the blocks into BlockMap (open addressing,
// prefetched); which blocks each slot holds must not change. BlockMap itself is checked against
// std::unordered_map, with position hashes that collide on purpose.
#include <catch2/catch.hpp>

#include <array>
#include <cstdint>
#include <deque>
#include <map>
#include <random>
#include <set>
#include <utility>
#include <vector>

#include <unordered_map>

#include "balancing/block_map.h"
#include "balancing/prefix_index.h"

using sluice::internal::BlockMap;
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
            int shrink_at = -1, int64_t shrunk = 0, uint64_t (*position)(uint64_t) = nullptr) {
  std::mt19937 rng(seed);
  PrefixIndex index(position);
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

TEST_CASE("prefix index: the same holdings when every block's table probe collides") {
  // 8 homes for every block in play: long probe runs, entries shifted back on every eviction.
  Replay(11, 3, 20, 12, 600, /*drops=*/true, -1, 0, [](uint64_t block) { return block % 8; });
  // Homes at the table's end: runs wrap around to its start.
  Replay(12, 3, 20, 12, 600, /*drops=*/true, -1, 0,
         [](uint64_t block) { return ~uint64_t{0} - block % 4; });
}

namespace {

// Random inserts, finds and erases on a BlockMap and on std::unordered_map; after each, the two
// agree on the size and on every key ever used. Keys come from a small pool so that erased keys
// come back, and the table grows from empty past several doublings.
void ReplayBlockMap(uint32_t seed, uint64_t (*position)(uint64_t), int steps) {
  std::mt19937_64 rng(seed);
  BlockMap<uint64_t> map(position);
  std::unordered_map<uint64_t, uint64_t> reference;
  std::vector<uint64_t> pool;
  for (int i = 0; i < 700; ++i) pool.push_back(rng());
  pool.push_back(0);  // 0 is a key like any other
  for (int step = 0; step < steps; ++step) {
    // Phases that grow the map, then shrink it, then churn.
    const int phase = step * 3 / steps;
    const uint64_t key = pool[rng() % pool.size()];
    const uint64_t op = rng() % 10;
    if (op < (phase == 0 ? 8u : phase == 1 ? 2u : 5u)) {
      const uint64_t value = rng();
      map.FindOrInsert(key).value = value;
      reference[key] = value;
    } else if (auto* e = map.Find(key); e != nullptr) {
      REQUIRE(e->key == key);
      map.Erase(e);
      REQUIRE(reference.erase(key) == 1);
    } else {
      REQUIRE(reference.count(key) == 0);
    }
    if (step % 97 == 0) map.Reserve(map.size() + rng() % 300);  // growth mid-run keeps entries
    INFO("seed " << seed << ", step " << step);
    REQUIRE(map.size() == reference.size());
    REQUIRE(map.size() * 16 <= map.capacity() * 9);
    for (uint64_t k : pool) {
      const auto* e = map.Find(k);
      const auto it = reference.find(k);
      REQUIRE((e != nullptr) == (it != reference.end()));
      if (e != nullptr) REQUIRE(e->value == it->second);
    }
  }
  map.Clear();
  CHECK(map.size() == 0);
  CHECK(map.Find(pool[0]) == nullptr);
}

}  // namespace

TEST_CASE("block map: inserts, finds and erases agree with std::unordered_map") {
  ReplayBlockMap(1, nullptr, 3000);  // the default position hash
}

TEST_CASE("block map: collisions, probe runs that wrap, and back-shifting erases") {
  ReplayBlockMap(2, [](uint64_t key) { return key % 3; }, 1500);
  ReplayBlockMap(3, [](uint64_t) { return uint64_t{0}; }, 800);  // one home for every key
  ReplayBlockMap(4, [](uint64_t key) { return ~uint64_t{0} - key % 5; }, 1500);  // the end: wraps
  ReplayBlockMap(5, [](uint64_t key) { return key >> 61; }, 1500);  // 8 homes, runs that merge
}

TEST_CASE("block map: an entry's probe run is closed again after an erase in its middle") {
  // Keys 1..4 share home 0 and sit at 0..3; key 5 (home 1) at 4. Erasing key 2 (at 1) must move
  // 3, 4 and 5 back, else a lookup of 5 would stop at the hole.
  BlockMap<uint64_t> map([](uint64_t key) { return key == 5 ? uint64_t{1} : uint64_t{0}; });
  for (uint64_t k = 1; k <= 5; ++k) map.FindOrInsert(k).value = k * 10;
  map.Erase(map.Find(2));
  CHECK(map.Find(2) == nullptr);
  for (uint64_t k : {1, 3, 4, 5}) {
    REQUIRE(map.Find(k) != nullptr);
    CHECK(map.Find(k)->value == k * 10);
  }
  map.Erase(map.Find(1));
  map.Erase(map.Find(3));
  map.Erase(map.Find(4));
  REQUIRE(map.Find(5) != nullptr);
  CHECK(map.size() == 1);
}
