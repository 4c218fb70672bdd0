// Internal: the host-scope counterpart of KeyedTable: a fixed-capacity table of key digests ->
// int64 cells inside a SharedRegion, shared by every process that opens the region.
//
// Nothing here is ever locked, so a process killed at any instant cannot wedge the others:
//  * a key is claimed by one 16-byte compare-and-swap of its whole digest into an empty slot
//    (cmpxchg16b), so a slot is either empty or fully owned: there is no half-written state for a
//    dying process to leave behind;
//  * cells are created "fresh" when the region is made, and afterwards change only through the
//    callers' own atomic operations;
//  * slots are never freed. Capacity is fixed at creation (max_keys, at load <= 3/4); when that
//    many keys have been claimed a new key gets ResourceExhausted naming the region, and known keys
//    keep working. Size max_keys for the distinct keys a region will see in its lifetime.

#ifndef SLUICE_LIB_SHARED_TABLE_H_
#define SLUICE_LIB_SHARED_TABLE_H_

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>

#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "stores/shm_region.h"
#include "sluice/internal/key_digest.h"
#include "sluice/shared_region.h"

namespace sluice {
inline namespace v1 {
namespace internal {

// 16-byte compare-and-swap of two adjacent int64 words (16-byte aligned). Lock-free on x86-64
// (cmpxchg16b, -mcx16), so it is atomic across processes sharing the memory.
bool CompareExchange16(int64_t* pair, int64_t expected_first, int64_t expected_second,
                       int64_t desired_first, int64_t desired_second);

class SharedTable {
 public:
  using CellsFn = absl::FunctionRef<void(int64_t* cells)>;

  // Opens (or creates) region `name` as a table of `cells_per_key` cells per key, with room for
  // `max_keys` keys, its cells created as `fresh_cell`. `spec.kind` and `spec.description` name
  // the configuration; the table adds its geometry.
  // InvalidArgument naming max_keys unless 1 <= max_keys <= kMaxSharedRegionKeys.
  static absl::StatusOr<std::unique_ptr<SharedTable>> Open(const std::string& name,
                                                           RegionSpec spec, int cells_per_key,
                                                           int64_t max_keys, int64_t fresh_cell);

  // The int64 words (after the region header) of a table of `cells_per_key` cells for `max_keys`
  // keys. InvalidArgument naming max_keys unless 1 <= max_keys <= kMaxSharedRegionKeys; every
  // product is checked.
  static absl::StatusOr<int64_t> WordsFor(int cells_per_key, int64_t max_keys);

  // Runs `fn` on the cells of `digest`, claiming a slot for it if it is new.
  absl::Status Visit(const KeyDigest& digest, CellsFn fn);
  // Runs `fn` on the cells of `digest` if present. Returns whether it was.
  bool VisitExisting(const KeyDigest& digest, CellsFn fn);
  // Runs `fn` on the cells of every claimed key.
  void ForEachKey(CellsFn fn);

  int64_t size() const { return region_->claimed().load(std::memory_order_relaxed); }
  int64_t memory_bytes() const { return region_->mapped_bytes(); }
  int64_t epoch_nanos() const { return region_->epoch_nanos(); }
  const std::string& name() const { return name_; }

 private:
  SharedTable(std::string name, std::unique_ptr<SharedRegion> region, int cells, int64_t capacity,
              int64_t max_keys);
  int64_t* Probe(const KeyDigest& d, bool claim, absl::Status* status);

  const std::string name_;
  const std::unique_ptr<SharedRegion> region_;
  const int cells_;
  const int stride_;
  const int64_t capacity_;
  const int64_t max_keys_;
};

}  // namespace internal
}  // namespace v1
}  // namespace sluice

#endif  // SLUICE_LIB_SHARED_TABLE_H_
