#include "stores/locked_table.h"

#include <limits>


namespace sluice {
inline namespace v1 {
namespace internal {
namespace {

constexpr int64_t kFullSweepInterval = 1'000'000;  // 1 ms, as KeyedTable's
constexpr int64_t kNeverSwept = std::numeric_limits<int64_t>::min();

}  // namespace

LockedTable::LockedTable(int cells_per_key, int64_t max_keys)
    : cells_(cells_per_key),
      max_keys_(max_keys),
      last_full_sweep_nanos_(kNeverSwept),
      shards_(new Shard[kShards]),
      fork_hooks_(std::make_unique<ForkHooks>([this] { LockForFork(); },
                                              [this] { UnlockAfterFork(false); },
                                              [this] { UnlockAfterFork(true); })) {}

LockedTable::~LockedTable() { fork_hooks_.reset(); }

void LockedTable::LockForFork() {
  for (int i = 0; i < kShards; ++i) shards_[i].mu.lock();
}

void LockedTable::UnlockAfterFork(bool in_child) {
  for (int i = kShards - 1; i >= 0; --i) {
    if (in_child) {
      shards_[i].mu.ResetInForkChild();
    } else {
      shards_[i].mu.unlock();
    }
  }
}

int64_t LockedTable::DropIdleLocked(Shard& shard, IdleFn idle) {
  int64_t dropped = 0;
  for (auto it = shard.keys.begin(); it != shard.keys.end();) {
    if (idle(it->second.get())) {
      shard.keys.erase(it++);
      ++dropped;
    } else {
      ++it;
    }
  }
  live_keys_.fetch_sub(dropped, std::memory_order_relaxed);
  return dropped;
}

absl::Status LockedTable::Visit(const KeyDigest& digest, int64_t now_nanos, IdleFn idle,
                                CellsFn fn) {
  Shard& shard = ShardFor(digest);
  for (int attempt = 0; attempt < 2; ++attempt) {
    {
      MutexLock lock(&shard.mu);
      int64_t* cells = nullptr;
      if (auto it = shard.keys.find(digest); it != shard.keys.end()) cells = it->second.get();
      if (cells == nullptr && live_keys_.load(std::memory_order_relaxed) >= max_keys_) {
        DropIdleLocked(shard, idle);  // this shard first: it is already locked
      }
      if (cells == nullptr && live_keys_.load(std::memory_order_relaxed) < max_keys_) {
        cells = shard.keys.try_emplace(digest, Cells(new int64_t[cells_]())).first->second.get();
        live_keys_.fetch_add(1, std::memory_order_relaxed);
      }
      if (cells != nullptr) {
        fn(cells);
        return absl::OkStatus();
      }
    }
    // Full with this shard's idle keys gone: sweep every shard (no lock held, so shard locks are
    // never nested), at most once per interval.
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

bool LockedTable::VisitExisting(const KeyDigest& digest, CellsFn fn) {
  Shard& shard = ShardFor(digest);
  MutexLock lock(&shard.mu);
  auto it = shard.keys.find(digest);
  if (it == shard.keys.end()) return false;
  fn(it->second.get());
  return true;
}

int64_t LockedTable::DropIdle(IdleFn idle) {
  int64_t dropped = 0;
  for (int i = 0; i < kShards; ++i) {
    MutexLock lock(&shards_[i].mu);
    dropped += DropIdleLocked(shards_[i], idle);
  }
  return dropped;
}

int64_t LockedTable::memory_bytes() const {
  // The blocks, plus a map slot (digest + pointer + control byte) per key, plus the shards.
  const int64_t per_key = static_cast<int64_t>(sizeof(int64_t)) * cells_ +
                          static_cast<int64_t>(sizeof(KeyDigest) + sizeof(Cells) + 1);
  return size() * per_key + static_cast<int64_t>(sizeof(Shard)) * kShards;
}

}  // namespace internal
}  // namespace v1
}  // namespace sluice
