#include "stores/shared_table.h"

#include <algorithm>
#include <bit>
#include <cassert>

#include "absl/strings/str_cat.h"
#include "stores/keyed_table.h"
#include "sluice/shared_region.h"

namespace sluice {
inline namespace v1 {
namespace internal {

namespace {
inline std::atomic_ref<int64_t> Word(int64_t* p) { return std::atomic_ref<int64_t>(*p); }
// Even, so that every slot's digest pair (and any cell pair) is 16-byte aligned.
int StrideFor(int cells) { return (2 + cells + 1) & ~1; }
// REQUIRES: 1 <= max_keys <= kMaxSharedRegionKeys, so that nothing here overflows.
int64_t CapacityFor(int64_t max_keys) {
  const int64_t wanted = max_keys + max_keys / 3 + 1;  // load <= 3/4
  return std::max<int64_t>(16, int64_t{1} << std::bit_width(static_cast<uint64_t>(wanted - 1)));
}
}  // namespace

absl::StatusOr<int64_t> SharedTable::WordsFor(int cells_per_key, int64_t max_keys) {
  if (max_keys < 1 || max_keys > kMaxSharedRegionKeys) {
    return absl::InvalidArgumentError(absl::StrCat("max_keys must be 1 to ", kMaxSharedRegionKeys,
                                                   " with a shared_region, got ", max_keys));
  }
  assert(cells_per_key >= 1 && cells_per_key <= 2 * kMaxSharedRegionInFlight);
  int64_t words = 0;
  if (__builtin_mul_overflow(CapacityFor(max_keys), int64_t{StrideFor(cells_per_key)}, &words)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "max_keys ", max_keys, " with ", cells_per_key, " cells per key overflows a region size"));
  }
  return words;
}

bool CompareExchange16(int64_t* pair, int64_t expected_first, int64_t expected_second,
                       int64_t desired_first, int64_t desired_second) {
  __extension__ typedef unsigned __int128 U128;  // GCC/Clang: the operand of cmpxchg16b
  auto pack = [](int64_t first, int64_t second) {
    return static_cast<U128>(static_cast<uint64_t>(first)) |
           (static_cast<U128>(static_cast<uint64_t>(second)) << 64);
  };
  return __sync_bool_compare_and_swap(reinterpret_cast<U128*>(pair),
                                      pack(expected_first, expected_second),
                                      pack(desired_first, desired_second));
}

absl::StatusOr<std::unique_ptr<SharedTable>> SharedTable::Open(const std::string& name,
                                                               RegionSpec spec, int cells_per_key,
                                                               int64_t max_keys,
                                                               int64_t fresh_cell) {
  absl::StatusOr<int64_t> word_count = WordsFor(cells_per_key, max_keys);
  if (!word_count.ok()) return word_count.status();
  const int stride = StrideFor(cells_per_key);
  const int64_t capacity = CapacityFor(max_keys);
  spec.description = absl::StrCat(spec.description, ", max_keys=", max_keys);
  spec.words = *word_count;
  absl::StatusOr<std::unique_ptr<SharedRegion>> region = SharedRegion::OpenOrCreate(
      name, spec, [&](int64_t* words, int64_t count) {
        for (int64_t slot = 0; slot < count; slot += stride) {
          for (int c = 0; c < cells_per_key; ++c) words[slot + 2 + c] = fresh_cell;
        }
      });
  if (!region.ok()) return region.status();
  return std::unique_ptr<SharedTable>(
      new SharedTable(name, *std::move(region), cells_per_key, capacity, max_keys));
}

SharedTable::SharedTable(std::string name, std::unique_ptr<SharedRegion> region, int cells,
                         int64_t capacity, int64_t max_keys)
    : name_(std::move(name)),
      region_(std::move(region)),
      cells_(cells),
      stride_(StrideFor(cells)),
      capacity_(capacity),
      max_keys_(max_keys) {}

int64_t* SharedTable::Probe(const KeyDigest& d, bool claim, absl::Status* status) {
  const int64_t mask = capacity_ - 1;
  const int64_t hi = static_cast<int64_t>(d.hi), lo = static_cast<int64_t>(d.lo);
  int64_t i = lo & mask;
  for (int64_t probes = 0; probes < capacity_;) {
    int64_t* slot = region_->words() + i * stride_;
    // The digest pair is written once, by one 16-byte CAS: seeing our `hi` means `lo` is ours too.
    const int64_t slot_hi = Word(slot).load(std::memory_order_acquire);
    if (slot_hi == hi) {
      if (Word(slot + 1).load(std::memory_order_acquire) == lo) return slot + 2;
    } else if (slot_hi == 0) {
      if (!claim) return nullptr;
      if (region_->claimed().load(std::memory_order_relaxed) >= max_keys_) {
        *status = absl::ResourceExhaustedError(absl::StrCat(
            "sluice: shared_region \"", name_, "\" is full: ", max_keys_,
            " keys claimed (slots are never freed; create it with a larger max_keys)"));
        return nullptr;
      }
      if (CompareExchange16(slot, 0, 0, hi, lo)) {
        region_->claimed().fetch_add(1, std::memory_order_relaxed);
        return slot + 2;
      }
      continue;  // another process claimed this slot just now: look at it again
    }
    i = (i + 1) & mask;
    ++probes;
  }
  *status = absl::ResourceExhaustedError(
      absl::StrCat("sluice: shared_region \"", name_, "\" has no free slot"));
  return nullptr;
}

absl::Status SharedTable::Visit(const KeyDigest& digest, CellsFn fn) {
  absl::Status status;
  int64_t* cells = Probe(digest, /*claim=*/true, &status);
  if (cells == nullptr) return status;
  fn(cells);
  return absl::OkStatus();
}

bool SharedTable::VisitExisting(const KeyDigest& digest, CellsFn fn) {
  absl::Status unused;
  int64_t* cells = Probe(digest, /*claim=*/false, &unused);
  if (cells == nullptr) return false;
  fn(cells);
  return true;
}

void SharedTable::ForEachKey(CellsFn fn) {
  for (int64_t i = 0; i < capacity_; ++i) {
    int64_t* slot = region_->words() + i * stride_;
    if (Word(slot).load(std::memory_order_acquire) != 0) fn(slot + 2);
  }
}

}  // namespace internal

absl::StatusOr<int64_t> SharedRegionBytesForWindows(int64_t windows, int64_t max_keys) {
  constexpr absl::string_view kName = "sluice.SharedRegionBytesForWindows";
  if (windows < 1 || windows > internal::KeyedTable::kMaxCells) {
    return absl::InvalidArgumentError(absl::StrCat(
        kName, ": windows must be 1 to ", internal::KeyedTable::kMaxCells, ", got ", windows));
  }
  // As OpenSharedCells: one cell per window.
  absl::StatusOr<int64_t> words =
      internal::SharedTable::WordsFor(static_cast<int>(windows), max_keys);
  if (!words.ok()) {
    return absl::Status(words.status().code(), absl::StrCat(kName, ": ", words.status().message()));
  }
  return internal::SharedRegion::BytesFor(*words);
}

}  // namespace v1
}  // namespace sluice
