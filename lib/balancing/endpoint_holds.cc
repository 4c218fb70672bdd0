#include "balancing/endpoint_holds.h"

#include <atomic>
#include <random>

#include "absl/strings/str_cat.h"
#include "sluice/internal/key_digest.h"

namespace sluice {
inline namespace v1 {
namespace internal {
namespace {

// Cell offsets within a key's cells (each pair 16-byte aligned: SharedTable keeps cells so).
constexpr int kCooldownUntil = 0, kCooldownReason = 1, kEjectedUntil = 2;
constexpr int kCells = 4;

std::atomic_ref<int64_t> Word(int64_t* p) { return std::atomic_ref<int64_t>(*p); }

}  // namespace

int64_t SharedHolds::cooldown_until() const {
  return Word(cells_ + kCooldownUntil).load(std::memory_order_acquire);
}

Failure SharedHolds::cooldown_reason() const {
  const int64_t r = Word(cells_ + kCooldownReason).load(std::memory_order_acquire);
  return r > 0 && r < kFailureCount ? static_cast<Failure>(r) : Failure::kNone;
}

int64_t SharedHolds::ejected_until() const {
  return Word(cells_ + kEjectedUntil).load(std::memory_order_acquire);
}

bool SharedHolds::ExtendCooldown(int64_t until, Failure reason) {
  int64_t* pair = cells_ + kCooldownUntil;
  for (;;) {
    const int64_t current = Word(pair).load(std::memory_order_acquire);
    const int64_t current_reason = Word(pair + 1).load(std::memory_order_acquire);
    if (current >= until) return false;
    // Until and reason change together, so a reader never pairs one cooldown's end with
    // another's reason for long; a torn read of the two retries here.
    if (CompareExchange16(pair, current, current_reason, until, static_cast<int64_t>(reason))) {
      return true;
    }
  }
}

void SharedHolds::ExtendEjection(int64_t until) {
  std::atomic_ref<int64_t> word = Word(cells_ + kEjectedUntil);
  int64_t current = word.load(std::memory_order_acquire);
  while (current < until && !word.compare_exchange_weak(current, until, std::memory_order_acq_rel)) {
  }
}

void SharedHolds::Clear() {
  int64_t* pair = cells_ + kCooldownUntil;
  for (;;) {
    const int64_t current = Word(pair).load(std::memory_order_acquire);
    const int64_t current_reason = Word(pair + 1).load(std::memory_order_acquire);
    if (CompareExchange16(pair, current, current_reason, 0, 0)) break;
  }
  Word(cells_ + kEjectedUntil).store(0, std::memory_order_release);
}

std::string SharedHoldTable::RegionNameFor(std::string_view shared_region) {
  return std::string(shared_region) + ".endpoints";
}

absl::StatusOr<std::shared_ptr<SharedHoldTable>> SharedHoldTable::Open(
    std::string_view shared_region) {
  RegionSpec spec;
  spec.kind = "sluice.Balancer.endpoints";
  spec.description = "cells=cooldown_until,cooldown_reason,ejected_until,0";
  absl::StatusOr<std::unique_ptr<SharedTable>> table = SharedTable::Open(
      RegionNameFor(shared_region), std::move(spec), kCells, kMaxEndpoints, /*fresh_cell=*/0);
  if (!table.ok()) return table.status();
  return std::shared_ptr<SharedHoldTable>(
      new SharedHoldTable(std::shared_ptr<SharedTable>(*std::move(table))));
}

absl::StatusOr<SharedHolds> SharedHoldTable::HoldsOf(std::string_view id) {
  int64_t* cells = nullptr;
  absl::Status status = table_->Visit(DigestKey(id), [&](int64_t* c) { cells = c; });
  if (!status.ok()) return status;
  return SharedHolds(table_, cells);
}

absl::StatusOr<uint64_t> SharedHoldTable::NextRoundRobin() {
  // A digest no string is known to hash to (ids are hashed; this one is written down).
  static constexpr KeyDigest kCursorKey{.hi = 0x726f756e64726f62ULL, .lo = 0x696e2e637572736fULL};
  uint64_t turn = 0;
  absl::Status status = table_->Visit(kCursorKey, [&](int64_t* cells) {
    turn = static_cast<uint64_t>(Word(cells).fetch_add(1, std::memory_order_relaxed));
  });
  if (!status.ok()) return status;
  return turn;
}

absl::StatusOr<uint64_t> SharedHoldTable::HostTag() {
  static constexpr KeyDigest kTagKey{.hi = 0x686f73742d746167ULL, .lo = 0x2e636c7573746572ULL};
  uint64_t tag = 0;
  absl::Status status = table_->Visit(kTagKey, [&](int64_t* cells) {
    std::atomic_ref<int64_t> word = Word(cells);
    int64_t current = word.load(std::memory_order_acquire);
    if (current == 0) {
      std::random_device device;
      const int64_t drawn = static_cast<int64_t>((uint64_t{device()} << 32 | device()) | 1);
      if (word.compare_exchange_strong(current, drawn, std::memory_order_acq_rel)) current = drawn;
    }
    tag = static_cast<uint64_t>(current);
  });
  if (!status.ok()) return status;
  return tag;
}

}  // namespace internal
}  // namespace v1
}  // namespace sluice
