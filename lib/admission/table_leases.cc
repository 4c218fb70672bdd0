// Process and host scope: leases in a lease table (this process's, or a host region's). Every
// call decides at once.
#include <algorithm>
#include <memory>
#include <utility>

#include "absl/strings/str_cat.h"
#include "admission/lease_backend.h"
#include "base/time_arithmetic.h"

namespace sluice {
inline namespace v1 {
namespace internal {

absl::Status LeaseExpiredError() {
  return absl::FailedPreconditionError(
      "sluice.ConcurrencyLimiter: the lease expired and its slot was reclaimed");
}

TableLeases::TableLeases(const LeaseSettings& settings, std::unique_ptr<LeaseStore> table)
    : LeaseBackend(settings), table_(std::move(table)) {}

void TableLeases::Acquire(const KeyDigest& d, int64_t now_nanos, int64_t max_in_flight,
                          LeaseGrant* out) {
  const int64_t expires_at = AddDuration(now_nanos, settings().lease);
  const LeaseStore::Grant grant = table_->Acquire(d, max_in_flight, now_nanos, expires_at);
  out->decision.limit = max_in_flight;
  out->decision.allowed = grant.lease_id != 0;
  if (out->decision.allowed) {
    out->decision.remaining = max_in_flight - grant.in_flight;
    out->lease = {LeaseRef::Holder::kTable, d, grant.lease_id, expires_at};
    return;
  }
  out->decision.retry_after_nanos =
      std::max<int64_t>(1, absl::ToInt64Nanoseconds(settings().retry_after));
  if (grant.table_full) {
    out->decision.remaining = -1;
  } else {
    out->decision.remaining = 0;
    out->decision.reset_after_nanos = grant.earliest_expiry - now_nanos;  // a slot frees by then
  }
}

Pending<ConcurrencyLimiter::Permit> TableLeases::StartAcquire(const KeyDigest& d,
                                                              int64_t now_nanos,
                                                              int64_t max_in_flight, bool,
                                                              const PermitMaker& make) {
  LeaseGrant grant;
  Acquire(d, now_nanos, max_in_flight, &grant);
  return Pending<ConcurrencyLimiter::Permit>(make(grant));
}

absl::Status TableLeases::Release(const LeaseRef& lease) {
  if (lease.holder == LeaseRef::Holder::kUnbacked) return absl::OkStatus();
  if (!table_->Release(lease.digest, lease.lease_id, lease.expires_at_nanos)) {
    return absl::FailedPreconditionError(
        "sluice.ConcurrencyLimiter: the lease expired before release and its slot was "
        "reclaimed; renew long work");
  }
  return absl::OkStatus();
}

Pending<absl::Status> TableLeases::StartRenew(LeaseRef* lease, absl::Duration ttl,
                                              int64_t now_nanos) {
  const int64_t expires_at = AddDuration(now_nanos, ttl);
  if (lease->holder == LeaseRef::Holder::kTable &&
      !table_->Renew(lease->digest, lease->lease_id, lease->expires_at_nanos, expires_at)) {
    return Pending<absl::Status>(LeaseExpiredError());
  }
  lease->expires_at_nanos = expires_at;
  return Pending<absl::Status>(absl::OkStatus());
}

Pending<int64_t> TableLeases::StartInFlight(const KeyDigest& d, int64_t now_nanos) {
  return Pending<int64_t>(table_->InFlight(d, now_nanos));
}

int64_t TableLeases::ReclaimExpired(int64_t now_nanos) {
  return table_->ReclaimExpired(now_nanos);
}

}  // namespace internal
}  // namespace v1
}  // namespace sluice
