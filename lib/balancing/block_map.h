// The prefix index's table: block hash -> a small value, open addressing with linear probing in
// one flat array of 64-byte, cache-line-aligned entries, beside one tag byte per entry (0: empty,
// else 7 bits of the key's hash), as in Abseil's Swiss tables. A probe reads tags first: they are
// 1/64 of the table, so they mostly stay in the CPU caches, and a lookup of an absent block (the
// next turn's new blocks, the binary search past a match) rarely touches an entry. A probe that
// finds its key reads one entry (one cache line), so the caller can prefetch a whole request's
// blocks before touching them (PrefixIndex::Touch does): with ~256 blocks per request in a table
// far larger than the CPU caches, issuing the misses together instead of one after the other is
// most of the cost of a pick.
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
  };
  static_assert(sizeof(Entry) == 64, "one entry, one cache line");

  // Where a key's probe starts (before the mask). Tests pass one that collides on purpose.
  using PositionHash = uint64_t (*)(uint64_t key);

  explicit BlockMap(PositionHash position = nullptr) : position_(position) {}
  ~BlockMap() { Free(entries_, tags_, capacity_); }
  BlockMap(const BlockMap&) = delete;
  BlockMap& operator=(const BlockMap&) = delete;

  size_t size() const { return size_; }
  size_t capacity() const { return capacity_; }

  Entry* Find(uint64_t key) {
    if (size_ == 0) return nullptr;
    const uint64_t h = Hash(key);
    const uint8_t tag = TagOf(h);
    for (size_t i = h & mask_;; i = (i + 1) & mask_) {
      if (tags_[i] == 0) return nullptr;
      if (tags_[i] == tag && entries_[i].key == key) return &entries_[i];
    }
  }
  const Entry* Find(uint64_t key) const { return const_cast<BlockMap*>(this)->Find(key); }

  // The entry of `key`, inserted with a value-initialised V if absent. May grow the table (and
  // so move every entry) unless Reserve made room before.
  Entry& FindOrInsert(uint64_t key) {
    if (ABSL_PREDICT_FALSE(!Fits(size_ + 1))) Grow(size_ + 1);
    const uint64_t h = Hash(key);
    const uint8_t tag = TagOf(h);
    size_t i = h & mask_;
    for (; tags_[i] != 0; i = (i + 1) & mask_) {
      if (tags_[i] == tag && entries_[i].key == key) return entries_[i];
    }
    tags_[i] = tag;
    Entry& e = entries_[i];
    e.key = key;
    e.value = V();
    ++size_;
    return e;
  }

  // Removes `e` (an entry of this table). Moves later entries of its probe run back.
  void Erase(Entry* e) {
    size_t hole = static_cast<size_t>(e - entries_);
    for (size_t j = (hole + 1) & mask_; tags_[j] != 0; j = (j + 1) & mask_) {
      // entries_[j] may fill the hole if its home is not in (hole, j]: it stays reachable.
      const size_t home = Hash(entries_[j].key) & mask_;
      if (((j - home) & mask_) >= ((j - hole) & mask_)) {
        entries_[hole] = entries_[j];
        tags_[hole] = tags_[j];
        hole = j;
      }
    }
    tags_[hole] = 0;
    --size_;
  }

  // Makes room for `n` entries in all, so that inserting up to that many moves nothing.
  void Reserve(size_t n) {
    if (!Fits(n)) Grow(n);
  }

  // Starts loading the tags and the `lines` entries where `key`'s probe begins (an erase reads
  // on through its probe run).
  void Prefetch(uint64_t key, size_t lines = 1) const {
    if (capacity_ == 0) return;
    const size_t home = Hash(key) & mask_;
    __builtin_prefetch(&tags_[home], 1, 3);
    for (size_t k = 0; k < lines; ++k) __builtin_prefetch(&entries_[(home + k) & mask_], 1, 3);
  }

  void Clear() {
    Free(entries_, tags_, capacity_);
    entries_ = nullptr;
    tags_ = nullptr;
    capacity_ = mask_ = size_ = 0;
  }

 private:
  static constexpr size_t kMinCapacity = 256;
  static constexpr size_t kHugePage = size_t{2} << 20;

  uint64_t Hash(uint64_t key) const {
    return position_ != nullptr ? position_(key) : absl::Hash<uint64_t>{}(key);
  }
  // 7 bits of the hash the position does not use (for tables under 2^57 entries), never 0.
  static uint8_t TagOf(uint64_t hash) { return static_cast<uint8_t>(hash >> 57) | 0x80; }
  bool Fits(size_t n) const { return n * 16 <= capacity_ * 9; }

  void Grow(size_t n) {
    size_t capacity = capacity_ == 0 ? kMinCapacity : capacity_;
    while (n * 16 > capacity * 9) capacity *= 2;
    Entry* old = entries_;
    uint8_t* old_tags = tags_;
    const size_t old_capacity = capacity_;
    entries_ = static_cast<Entry*>(Allocate(capacity * sizeof(Entry), alignof(Entry)));
    tags_ = static_cast<uint8_t*>(Allocate(capacity, 64));
    capacity_ = capacity;
    mask_ = capacity - 1;
    for (size_t i = 0; i < old_capacity; ++i) {
      if (old_tags[i] == 0) continue;
      size_t at = Hash(old[i].key) & mask_;
      while (tags_[at] != 0) at = (at + 1) & mask_;
      entries_[at] = old[i];
      tags_[at] = old_tags[i];
    }
    Free(old, old_tags, old_capacity);
  }

  static size_t Alignment(size_t bytes, size_t align) { return bytes >= kHugePage ? kHugePage : align; }
  static void* Allocate(size_t bytes, size_t align) {
    void* p = ::operator new(bytes, std::align_val_t{Alignment(bytes, align)});
#if defined(__linux__) && defined(MADV_HUGEPAGE)
    if (bytes >= kHugePage) (void)madvise(p, bytes, MADV_HUGEPAGE);  // a hint; fine if refused
#endif
    std::memset(p, 0, bytes);  // tags 0: every entry empty
    return p;
  }
  static void Free(Entry* entries, uint8_t* tags, size_t capacity) {
    if (entries == nullptr) return;
    ::operator delete(entries, std::align_val_t{Alignment(capacity * sizeof(Entry), alignof(Entry))});
    ::operator delete(tags, std::align_val_t{Alignment(capacity, 64)});
  }

  PositionHash position_;
  Entry* entries_ = nullptr;
  uint8_t* tags_ = nullptr;  // per entry: 0 empty, else TagOf its key's hash
  size_t capacity_ = 0;
  size_t mask_ = 0;
  size_t size_ = 0;
};

}  // namespace internal
}  // namespace v1
}  // namespace sluice

#endif  // SLUICE_LIB_BLOCK_MAP_H_
