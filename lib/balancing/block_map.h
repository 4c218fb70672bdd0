// The prefix index's table: block hash -> a small value, open addressing with linear probing in
// one flat array of 64-byte, cache-line-aligned entries. One probe reads one cache line, so the
// caller can prefetch a whole request's blocks before touching them (PrefixIndex::Touch does):
// with ~256 blocks per request in a table far larger than the CPU caches, issuing the misses
// together instead of one after the other is most of the cost of a pick.
//
// Erasing shifts the following entries back (no tombstones), so a table that inserts and evicts
// a conversation per pick keeps its probe lengths. The capacity is a power of two, doubled when
// the load passes 9/16 (an index at its bound holds the sum of its slots' capacities; the
// margin above 1/2 keeps one request's insertions, before its evictions, from doubling a table
// that is exactly at its bound). Tables of 2 MiB and more ask Linux for huge pages, as every
// probe is a TLB miss otherwise.
//
// Not thread-safe. V must be trivially copyable.
#ifndef SLUICE_LIB_BLOCK_MAP_H_
#define SLUICE_LIB_BLOCK_MAP_H_

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <new>
#include <type_traits>

#include "absl/base/optimization.h"
#include "absl/hash/hash.h"

#if defined(__linux__)
#include <sys/mman.h>
#endif

namespace sluice {
inline namespace v1 {
namespace internal {

template <typename V>
class BlockMap {
 public:
  static_assert(std::is_trivially_copyable_v<V>, "BlockMap moves entries bytewise");

  struct alignas(64) Entry {
    uint64_t key;
    V value;
    bool used;
  };
  static_assert(sizeof(Entry) == 64, "one entry, one cache line");

  // Where a key's probe starts (before the mask). Tests pass one that collides on purpose.
  using PositionHash = uint64_t (*)(uint64_t key);

  explicit BlockMap(PositionHash position = nullptr) : position_(position) {}
  ~BlockMap() { Free(entries_, capacity_); }
  BlockMap(const BlockMap&) = delete;
  BlockMap& operator=(const BlockMap&) = delete;

  size_t size() const { return size_; }
  size_t capacity() const { return capacity_; }

  Entry* Find(uint64_t key) {
    if (size_ == 0) return nullptr;
    for (size_t i = Home(key);; i = (i + 1) & mask_) {
      Entry& e = entries_[i];
      if (!e.used) return nullptr;
      if (e.key == key) return &e;
    }
  }
  const Entry* Find(uint64_t key) const { return const_cast<BlockMap*>(this)->Find(key); }

  // The entry of `key`, inserted with a value-initialised V if absent. May grow the table (and
  // so move every entry) unless Reserve made room before.
  Entry& FindOrInsert(uint64_t key) {
    if (ABSL_PREDICT_FALSE(!Fits(size_ + 1))) Grow(size_ + 1);
    size_t i = Home(key);
    for (; entries_[i].used; i = (i + 1) & mask_) {
      if (entries_[i].key == key) return entries_[i];
    }
    Entry& e = entries_[i];
    e.key = key;
    e.value = V();
    e.used = true;
    ++size_;
    return e;
  }

  // Removes `e` (an entry of this table). Moves later entries of its probe run back.
  void Erase(Entry* e) {
    size_t hole = static_cast<size_t>(e - entries_);
    for (size_t j = (hole + 1) & mask_; entries_[j].used; j = (j + 1) & mask_) {
      // entries_[j] may fill the hole if its home is not in (hole, j]: it stays reachable.
      const size_t home = Home(entries_[j].key);
      if (((j - home) & mask_) >= ((j - hole) & mask_)) {
        entries_[hole] = entries_[j];
        hole = j;
      }
    }
    entries_[hole].used = false;
    --size_;
  }

  // Makes room for `n` entries in all, so that inserting up to that many moves nothing.
  void Reserve(size_t n) {
    if (!Fits(n)) Grow(n);
  }

  // Starts loading the `lines` cache lines where `key`'s probe begins (an erase reads on
  // through its probe run).
  void Prefetch(uint64_t key, size_t lines = 1) const {
    if (capacity_ == 0) return;
    const size_t home = Home(key);
    for (size_t k = 0; k < lines; ++k) __builtin_prefetch(&entries_[(home + k) & mask_], 1, 3);
  }

  void Clear() {
    Free(entries_, capacity_);
    entries_ = nullptr;
    capacity_ = mask_ = size_ = 0;
  }

 private:
  static constexpr size_t kMinCapacity = 256;
  static constexpr size_t kHugePage = size_t{2} << 20;

  size_t Home(uint64_t key) const {
    const uint64_t h = position_ != nullptr ? position_(key) : absl::Hash<uint64_t>{}(key);
    return static_cast<size_t>(h) & mask_;
  }
  bool Fits(size_t n) const { return n * 16 <= capacity_ * 9; }

  void Grow(size_t n) {
    size_t capacity = capacity_ == 0 ? kMinCapacity : capacity_;
    while (n * 16 > capacity * 9) capacity *= 2;
    Entry* old = entries_;
    const size_t old_capacity = capacity_;
    entries_ = Allocate(capacity);
    capacity_ = capacity;
    mask_ = capacity - 1;
    for (size_t i = 0; i < old_capacity; ++i) {
      if (!old[i].used) continue;
      size_t at = Home(old[i].key);
      while (entries_[at].used) at = (at + 1) & mask_;
      entries_[at] = old[i];
    }
    Free(old, old_capacity);
  }

  static size_t Alignment(size_t capacity) {
    return capacity * sizeof(Entry) >= kHugePage ? kHugePage : alignof(Entry);
  }
  static Entry* Allocate(size_t capacity) {
    const size_t bytes = capacity * sizeof(Entry);
    void* p = ::operator new(bytes, std::align_val_t{Alignment(capacity)});
#if defined(__linux__) && defined(MADV_HUGEPAGE)
    if (bytes >= kHugePage) (void)madvise(p, bytes, MADV_HUGEPAGE);  // a hint; fine if refused
#endif
    std::memset(p, 0, bytes);  // every entry unused
    return static_cast<Entry*>(p);
  }
  static void Free(Entry* entries, size_t capacity) {
    if (entries != nullptr) ::operator delete(entries, std::align_val_t{Alignment(capacity)});
  }

  PositionHash position_;
  Entry* entries_ = nullptr;
  size_t capacity_ = 0;
  size_t mask_ = 0;
  size_t size_ = 0;
};

}  // namespace internal
}  // namespace v1
}  // namespace sluice

#endif  // SLUICE_LIB_BLOCK_MAP_H_
