// Internal: where a ConcurrencyLimiter's leases live, behind one interface. The limiter checks
// its arguments and makes Permits; it never asks which scope it is in.
//
//   process   a LeaseTable in this process                          table_leases.cc
//   host      a SharedLeaseTable in a shared-memory region            table_leases.cc
//   Redis     a sorted set per key (ClusterLeases), with the failure  redis_lease_backend.cc
//             mode for when Redis cannot answer
//
// OpenLeaseBackend is the one factory: it validates the scope and builds the backend.
#ifndef SLUICE_LIB_ADMISSION_LEASE_BACKEND_H_
#define SLUICE_LIB_ADMISSION_LEASE_BACKEND_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <string_view>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "sluice/concurrency_limiter.h"
#include "sluice/decision.h"
#include "sluice/internal/key_digest.h"
#include "sluice/internal/lease_ref.h"
#include "sluice/pending.h"
#include "stores/lease_store.h"

namespace sluice {
inline namespace v1 {
namespace internal {

// Turns a grant into the caller's Permit. Backends call it as soon as the grant is known (also
// for a Pending dropped unread, so the Permit it makes gives its slot back).
using PermitMaker = std::function<ConcurrencyLimiter::Permit(const LeaseGrant&)>;

// The limiter's settings every backend reads.
struct LeaseSettings {
  int64_t max_in_flight = 0;
  absl::Duration lease;
  absl::Duration retry_after;  // the refusals' hint
  const Clock* clock = nullptr;
};

class LeaseBackend {
 public:
  explicit LeaseBackend(const LeaseSettings& settings) : settings_(settings) {}
  virtual ~LeaseBackend() = default;

  const LeaseSettings& settings() const { return settings_; }

  // Takes a slot for `d` if fewer than `max_in_flight` unexpired leases are held (the call's
  // cap: settings().max_in_flight, or a per-call one the limiter checked: in host scope at most
  // settings().max_in_flight); the lease ends settings().lease after `now_nanos`. May wait for
  // Redis (at most the store's timeouts). `out` is a default LeaseGrant (a Permit's own),
  // filled in place.
  virtual void Acquire(const KeyDigest& d, int64_t now_nanos, int64_t max_in_flight,
                       LeaseGrant* out) = 0;
  // The same, started: ready at once unless Redis must answer.
  virtual Pending<ConcurrencyLimiter::Permit> StartAcquire(const KeyDigest& d, int64_t now_nanos,
                                                           int64_t max_in_flight, bool want_fd,
                                                           const PermitMaker& make) = 0;
  // Gives the slot back: OK, or FailedPrecondition if the lease had expired and its slot was
  // reclaimed. Never blocks (Redis: sent, and kept across an outage until the lease would end).
  virtual absl::Status Release(const LeaseRef& lease) = 0;
  // Moves the lease's end to `ttl` after `now_nanos` (lease->expires_at_nanos follows). The
  // result: OK, FailedPrecondition if it had expired, Unavailable if Redis did not answer, or
  // an input error; a configuration error also goes to the Pending's status().
  virtual Pending<absl::Status> StartRenew(LeaseRef* lease, absl::Duration ttl,
                                           int64_t now_nanos) = 0;
  // Unexpired leases held for `d`; -1 if Redis did not answer.
  virtual Pending<int64_t> StartInFlight(const KeyDigest& d, int64_t now_nanos) = 0;
  // Reclaims the expired leases kept here; returns how many.
  virtual int64_t ReclaimExpired(int64_t now_nanos) = 0;
  // Redis: acquires decided by the failure mode. 0 elsewhere.
  virtual int64_t failure_mode_decisions() const { return 0; }

 private:
  const LeaseSettings settings_;
};

// The lease backend for `scope` (process, host or Redis). InvalidArgument naming the field for
// a bad scope; a host region's errors (see sluice/shared_region.h).
absl::StatusOr<std::unique_ptr<LeaseBackend>> OpenLeaseBackend(absl::string_view object,
                                                               const ScopeOptions& scope,
                                                               const LeaseSettings& settings);

// A backend over a lease table (process or host scope), for OpenLeaseBackend and for the Redis
// backend's kLocal failure mode (with its share of max_in_flight).
class TableLeases final : public LeaseBackend {
 public:
  TableLeases(const LeaseSettings& settings, std::unique_ptr<LeaseStore> table);

  void Acquire(const KeyDigest& d, int64_t now_nanos, int64_t max_in_flight,
               LeaseGrant* out) override;

  Pending<ConcurrencyLimiter::Permit> StartAcquire(const KeyDigest& d, int64_t now_nanos,
                                                   int64_t max_in_flight, bool want_fd,
                                                   const PermitMaker& make) override;
  absl::Status Release(const LeaseRef& lease) override;
  Pending<absl::Status> StartRenew(LeaseRef* lease, absl::Duration ttl,
                                   int64_t now_nanos) override;
  Pending<int64_t> StartInFlight(const KeyDigest& d, int64_t now_nanos) override;
  int64_t ReclaimExpired(int64_t now_nanos) override;

 private:
  const std::unique_ptr<LeaseStore> table_;
};

// FailedPrecondition: "<object>: the lease expired and its slot was reclaimed".
absl::Status LeaseExpiredError();

}  // namespace internal
}  // namespace v1
}  // namespace sluice

#endif  // SLUICE_LIB_ADMISSION_LEASE_BACKEND_H_
