// Internal: the memory of a MetricsRegistry's series, in one block of int64 words that is either
// this process's (process scope) or a SharedRegion (host scope). Both scopes use the same layout
// and the same lock-free code, so that what is tested in one holds in the other.
//
// Layout (words):
//   header   kHeaderWords: arena words used, series count, family count, dropped registrations
//   families capacity slots of 4 words: {state, hash, record, type}     (keyed by the name)
//   series   capacity slots of 4 words: {state, hash, record, values}   (keyed by the series key)
//   arena    max_series * kMetricsBytesPerSeries bytes, handed out by a bump pointer: the records
//            (a byte length word, then the bytes) and the series' values. Never freed.
// `record` and `values` are word offsets into the arena.
//
// A slot's state is 0 (empty), kReady, or "being created by pid P" ((P << 2) | 2). A slot is
// claimed by one 16-byte compare-and-swap of {0, 0} to {creating-by-me, hash}, so two processes
// creating the same key meet at one slot: the loser sees the hash and waits for kReady. The
// creator fills `record` and the last word, then publishes kReady (release). A creator that died
// before publishing is recognised by kill(P, 0) failing with ESRCH; a process creating the same
// key takes the slot over (compare-and-swap of its state) and creates it afresh (the dead
// creator's arena words are lost: a crash costs one record's bytes). Open addressing with linear
// probing, as lib/stores/shared_table.cc, at a load of at most 3/4.

#ifndef SLUICE_LIB_METRICS_METRICS_MEMORY_H_
#define SLUICE_LIB_METRICS_METRICS_MEMORY_H_

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "absl/functional/function_ref.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "stores/shm_region.h"

namespace sluice {
inline namespace v1 {
namespace internal {

inline std::atomic_ref<int64_t> Word(int64_t* p) { return std::atomic_ref<int64_t>(*p); }

class MetricsMemory {
 public:
  static constexpr int64_t kSlotWords = 4;
  static constexpr int64_t kHeaderWords = 8;
  static constexpr int64_t kReady = 1;
  // How long a process waits for another live process creating the same key.
  static constexpr absl::Duration kCreationWait = absl::Seconds(1);

  enum class Table { kFamilies, kSeries };
  enum class Outcome {
    kFound,    // the slot holds the key
    kCreated,  // this call made it
    kFull,     // max_series keys exist
    kNoRoom,   // `create` found no room in the arena
    kStuck,    // a live process has been creating the key for kCreationWait
  };
  struct Claim {
    Outcome outcome;
    int64_t* slot = nullptr;  // kFound, kCreated
  };

  // Words after the region header for `max_series` series (REQUIRES 1 <= max_series <=
  // kMaxMetricsSeries).
  static int64_t WordsFor(int64_t max_series);

  // What a host-scope registry of `max_series` series asks SharedRegion::OpenOrCreate for.
  static RegionSpec SpecFor(int64_t max_series);

  // Empty `shared_region`: private memory. Errors of SharedRegion::OpenOrCreate otherwise.
  static absl::StatusOr<std::shared_ptr<MetricsMemory>> Create(const std::string& shared_region,
                                                              int64_t max_series);
  ~MetricsMemory();
  MetricsMemory(const MetricsMemory&) = delete;
  MetricsMemory& operator=(const MetricsMemory&) = delete;

  // Finds the ready slot of `hash` whose record `matches`, or claims a slot and runs `create` on
  // it (which writes slot[2] and slot[3], returning false when the arena has no room: the slot is
  // then given back). REQUIRES: no other thread of this process is inside FindOrCreate on this
  // memory (the registry serialises them), so a slot being created by this pid is another
  // registry's (host scope) and finishes.
  Claim FindOrCreate(Table table, uint64_t hash, absl::FunctionRef<bool(const int64_t*)> matches,
                     absl::FunctionRef<bool(int64_t*)> create);

  // Runs `fn` on every ready slot of `table`, in slot order.
  void ForEachReady(Table table, absl::FunctionRef<void(const int64_t*)> fn) const;

  // `words` words of the arena, zeroed (they were never used), or -1 when it has no room.
  int64_t Allocate(int64_t words);
  // The arena offset of a copy of `bytes` (a length word, then the bytes), or -1.
  int64_t StoreBytes(std::string_view bytes);
  // The bytes stored at `offset`; empty if the offset or length lies outside the arena (memory
  // shared with other processes is read defensively).
  std::string_view BytesAt(int64_t offset) const;
  // The arena words [offset, offset + words), or nullptr if that lies outside the arena.
  int64_t* WordsAt(int64_t offset, int64_t words) const;

  std::atomic_ref<int64_t> dropped() const { return Word(words_ + 3); }
  int64_t series_count() const { return Word(words_ + 1).load(std::memory_order_relaxed); }
  int64_t memory_bytes() const { return bytes_; }
  bool host_scope() const { return region_ != nullptr; }

 private:
  MetricsMemory(std::unique_ptr<SharedRegion> region, void* private_words, int64_t* words,
                int64_t bytes, int64_t max_series);
  int64_t* TableStart(Table table) const;
  int64_t* Counter(Table table) const { return words_ + (table == Table::kSeries ? 1 : 2); }
  bool TryCount(Table table);

  const std::unique_ptr<SharedRegion> region_;  // host scope
  void* const private_words_;                   // process scope
  int64_t* const words_;
  const int64_t bytes_;
  const int64_t max_series_;
  const int64_t capacity_;  // slots per table, a power of two
  const int64_t arena_words_;
};

}  // namespace internal
}  // namespace v1
}  // namespace sluice

#endif  // SLUICE_LIB_METRICS_METRICS_MEMORY_H_
