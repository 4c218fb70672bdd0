// Where an endpoint's cooldown and ejection ("holds": it is held out of rotation until then)
// live with Options::shared_region: a table of cells in a second shared region,
// "<shared_region>.endpoints", keyed by the endpoint id's digest, so every process on the host
// that balances over the same ids sees one cooldown and one ejection per endpoint.
//
// Each key has two 16-byte pairs: [cooldown_until, cooldown_reason] and [ejected_until, 0], in
// nanoseconds on the balancers' clock (CLOCK_MONOTONIC's timeline, shared by every process; a
// ManualClock only within one process). Holds only ever grow by compare-and-swap (the later end
// wins, whoever sets it) except Restore, which writes zeros. Nothing is locked, so a process
// killed at any instant leaves the table usable.
#ifndef SLUICE_LIB_ENDPOINT_HOLDS_H_
#define SLUICE_LIB_ENDPOINT_HOLDS_H_

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "sluice/failure.h"
#include "stores/shared_table.h"

namespace sluice {
inline namespace v1 {
namespace internal {

// One endpoint's cells in the table; valid while the table lives (the EndpointState keeps it).
class SharedHolds {
 public:
  SharedHolds(std::shared_ptr<SharedTable> table, int64_t* cells)
      : table_(std::move(table)), cells_(cells) {}

  int64_t cooldown_until() const;
  Failure cooldown_reason() const;
  int64_t ejected_until() const;
  // Raises the cooldown to `until` (with its reason) unless it already lasts as long. Returns
  // whether it raised it.
  bool ExtendCooldown(int64_t until, Failure reason);
  void ExtendEjection(int64_t until);
  // Clears both holds.
  void Clear();

 private:
  std::shared_ptr<SharedTable> table_;
  int64_t* cells_;
};

class SharedHoldTable {
 public:
  // The region's name for a balancer's `shared_region`.
  static std::string RegionNameFor(std::string_view shared_region);
  // Opens (or creates) the table for `shared_region`. FailedPrecondition when a region of that
  // name holds something else (another object, another layout).
  static absl::StatusOr<std::shared_ptr<SharedHoldTable>> Open(std::string_view shared_region);
  // The cells of endpoint `id`, claiming them on first use. ResourceExhausted naming the region
  // once kMaxEndpoints distinct ids have been claimed in its lifetime.
  absl::StatusOr<SharedHolds> HoldsOf(std::string_view id);
  // The host's round-robin cursor (kRoundRobin): each call returns the next number, so the
  // host's processes take the endpoints in turn together. Kept under a reserved key that no
  // endpoint id digests to; ResourceExhausted as HoldsOf when the table is full.
  absl::StatusOr<uint64_t> NextRoundRobin();
  // A random number drawn once per region (by the first process to ask): names the host's
  // counter in cluster scope. Kept under another reserved key; ResourceExhausted as HoldsOf.
  absl::StatusOr<uint64_t> HostTag();

  static constexpr int64_t kMaxEndpoints = 4096;

 private:
  explicit SharedHoldTable(std::shared_ptr<SharedTable> table) : table_(std::move(table)) {}
  std::shared_ptr<SharedTable> table_;
};

}  // namespace internal
}  // namespace v1
}  // namespace sluice

#endif  // SLUICE_LIB_ENDPOINT_HOLDS_H_
