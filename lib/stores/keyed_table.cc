#include "stores/keyed_table.h"

#include <algorithm>
#include <bit>
#include <limits>
#include <thread>

namespace sluice {
inline namespace v1 {
namespace internal {

struct KeyedTable::Table {
  int64_t capacity;  // a power of two
  std::unique_ptr<int64_t[]> words;
};

namespace {

constexpr int64_t kMinCapacity = 16;
// When the table is at max_keys, a new key may trigger a sweep of every shard; under a flood of
// new keys that would be O(max_keys) per request, so full sweeps are at most this frequent.
constexpr int64_t kFullSweepInterval = 1'000'000;  // 1 ms
constexpr int64_t kNeverSwept = std::numeric_limits<int64_t>::min();

inline std::atomic_ref<int64_t> Word(int64_t* p) { return std::atomic_ref<int64_t>(*p); }

inline int64_t CapacityFor(int64_t keys) {
  // Load factor <= 1/2 after a rebuild, so a rebuild buys at least capacity/4 inserts.
  return std::max<int64_t>(kMinCapacity, int64_t{1} << std::bit_width(uint64_t(keys * 2)));
}

}  // namespace

KeyedTable::KeyedTable(int cells_per_key, int64_t max_keys, int64_t fresh_cell)
    : cells_(cells_per_key),
      stride_(2 + cells_per_key),
      max_keys_(max_keys),
      fresh_cell_(fresh_cell),
      last_full_sweep_nanos_(kNeverSwept),
      shards_(new Shard[kShards]) {
  for (int i = 0; i < kShards; ++i) shards_[i].table.store(NewTable(kMinCapacity));
  fork_hooks_ = std::make_unique<ForkHooks>(nullptr, nullptr, [this] { ResetInForkChild(); });
}

KeyedTable::~KeyedTable() {
  fork_hooks_.reset();  // no fork() hook may run on a half-destroyed table
  for (int i = 0; i < kShards; ++i) delete shards_[i].table.load();
}

void KeyedTable::ResetInForkChild() {
  for (int i = 0; i < kShards; ++i) {
    Shard& shard = shards_[i];
    // The readers counted here were parent threads, which do not exist in the child: a rebuild
    // waiting for them to leave would wait forever. Whatever they were doing was one CAS, done or
    // not. A writer that held the mutex left the shard consistent at every instant: an insert
    // publishes its slot last, a rebuild swaps in a complete table (the old one is never freed
    // before the swap).
    shard.readers.store(0, std::memory_order_relaxed);
    shard.maintenance.store(0, std::memory_order_relaxed);
    shard.mu.ResetInForkChild();
  }
}

KeyedTable::Table* KeyedTable::NewTable(int64_t capacity) const {
  auto* t = new Table{capacity, std::make_unique<int64_t[]>(capacity * stride_)};
  return t;  // make_unique value-initialises: every hi word is 0 (empty)
}

int64_t* KeyedTable::Find(Table* table, const KeyDigest& d) const {
  const int64_t mask = table->capacity - 1;
  int64_t i = static_cast<int64_t>(d.lo) & mask;
  for (;;) {
    int64_t* slot = table->words.get() + i * stride_;
    const uint64_t hi = static_cast<uint64_t>(Word(slot).load(std::memory_order_acquire));
    if (hi == 0) return nullptr;
    if (hi == d.hi &&
        static_cast<uint64_t>(Word(slot + 1).load(std::memory_order_relaxed)) == d.lo) {
      return slot + 2;
    }
    i = (i + 1) & mask;
  }
}

absl::Status KeyedTable::VisitSlow(Shard& shard, const KeyDigest& d, int64_t now_nanos,
                                   IdleFn idle, CellsFn fn) {
  for (int attempt = 0; attempt < 2; ++attempt) {
    {
      MutexLock lock(&shard.mu);
      int64_t* cells = Find(shard.table.load(std::memory_order_relaxed), d);
      if (cells == nullptr) cells = InsertLocked(shard, d, idle);
      if (cells != nullptr) {
        fn(cells);
        return absl::OkStatus();
      }
    }
    // At max_keys with no idle key in this shard: sweep every shard, at most once per interval.
    int64_t last = last_full_sweep_nanos_.load(std::memory_order_relaxed);
    const bool swept_recently =
        last != kNeverSwept && now_nanos >= last && now_nanos - last < kFullSweepInterval;
    if (attempt > 0 || swept_recently ||
        !last_full_sweep_nanos_.compare_exchange_strong(last, now_nanos) || DropIdle(idle) == 0) {
      break;
    }
  }
  return absl::ResourceExhaustedError(
      "sluice: key table full: max_keys live keys are all mid-window; raise max_keys or wait");
}

int64_t* KeyedTable::InsertLocked(Shard& shard, const KeyDigest& d, IdleFn idle) {
  Table* table = shard.table.load(std::memory_order_relaxed);
  if (live_keys_.load(std::memory_order_relaxed) >= max_keys_) {
    if (RebuildLocked(shard, idle, 1) == 0) return nullptr;
    table = shard.table.load(std::memory_order_relaxed);
  } else if ((shard.used + 1) * 4 > table->capacity * 3) {
    RebuildLocked(shard, idle, 1);
    table = shard.table.load(std::memory_order_relaxed);
  }
  const int64_t mask = table->capacity - 1;
  int64_t i = static_cast<int64_t>(d.lo) & mask;
  int64_t* slot;
  for (;; i = (i + 1) & mask) {
    slot = table->words.get() + i * stride_;
    if (Word(slot).load(std::memory_order_relaxed) == 0) break;
  }
  Word(slot + 1).store(static_cast<int64_t>(d.lo), std::memory_order_relaxed);
  for (int c = 0; c < cells_; ++c) Word(slot + 2 + c).store(fresh_cell_, std::memory_order_relaxed);
  Word(slot).store(static_cast<int64_t>(d.hi), std::memory_order_release);  // publish
  ++shard.used;
  live_keys_.fetch_add(1, std::memory_order_relaxed);
  return slot + 2;
}

int64_t KeyedTable::RebuildLocked(Shard& shard, IdleFn idle, int64_t extra) {
  shard.maintenance.store(1, std::memory_order_seq_cst);
  while (shard.readers.load(std::memory_order_seq_cst) != 0) std::this_thread::yield();

  Table* old_table = shard.table.load(std::memory_order_relaxed);
  int64_t survivors = 0;
  for (int64_t i = 0; i < old_table->capacity; ++i) {
    const int64_t* slot = old_table->words.get() + i * stride_;
    if (slot[0] != 0 && !idle(slot + 2)) ++survivors;
  }
  Table* table = NewTable(CapacityFor(survivors + extra));
  const int64_t mask = table->capacity - 1;
  for (int64_t i = 0; i < old_table->capacity; ++i) {
    const int64_t* from = old_table->words.get() + i * stride_;
    if (from[0] == 0 || idle(from + 2)) continue;
    int64_t j = from[1] & mask;
    while (table->words[j * stride_] != 0) j = (j + 1) & mask;
    std::copy(from, from + stride_, table->words.get() + j * stride_);
  }
  const int64_t dropped = shard.used - survivors;
  shard.used = survivors;
  live_keys_.fetch_sub(dropped, std::memory_order_relaxed);
  shard.table.store(table, std::memory_order_release);
  delete old_table;
  shard.maintenance.store(0, std::memory_order_seq_cst);
  return dropped;
}

bool KeyedTable::VisitExisting(const KeyDigest& d, CellsFn fn) {
  Shard& shard = ShardFor(d);
  MutexLock lock(&shard.mu);  // Peek is not a hot path; the mutex excludes maintenance
  int64_t* cells = Find(shard.table.load(std::memory_order_relaxed), d);
  if (cells == nullptr) return false;
  fn(cells);
  return true;
}

int64_t KeyedTable::DropIdle(IdleFn idle) {
  int64_t dropped = 0;
  for (int i = 0; i < kShards; ++i) {
    MutexLock lock(&shards_[i].mu);
    if (shards_[i].used > 0) dropped += RebuildLocked(shards_[i], idle, 0);
  }
  return dropped;
}

int64_t KeyedTable::memory_bytes() const {
  int64_t bytes = sizeof(*this) + int64_t{kShards} * sizeof(Shard);
  for (int i = 0; i < kShards; ++i) {
    MutexLock lock(&shards_[i].mu);  // a rebuild may free the table we would read
    bytes += shards_[i].table.load(std::memory_order_relaxed)->capacity * stride_ * 8 +
             sizeof(Table);
  }
  return bytes;
}

}  // namespace internal
}  // namespace v1
}  // namespace sluice
