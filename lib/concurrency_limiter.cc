#include "sluice/concurrency_limiter.h"

#include <limits>
#include <utility>

#include "absl/strings/str_cat.h"
#include "lease_table.h"
#include "shared_lease_table.h"

namespace sluice {
inline namespace v1 {

namespace {
constexpr absl::string_view kName = "sluice.ConcurrencyLimiter";

int64_t SaturatingAdd(int64_t a, int64_t b) {
  int64_t sum;
  if (__builtin_add_overflow(a, b, &sum)) return std::numeric_limits<int64_t>::max();
  return sum;
}
}  // namespace

absl::StatusOr<std::unique_ptr<ConcurrencyLimiter>> ConcurrencyLimiter::Create(
    const Options& options, const Clock* clock) {
  if (clock == nullptr) return absl::InvalidArgumentError(absl::StrCat(kName, ": clock is null"));
  if (options.max_in_flight < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat(kName, ": max_in_flight must be >= 1, got ", options.max_in_flight));
  }
  if (options.lease <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError(absl::StrCat(
        kName, ": lease must be > 0, got ", absl::FormatDuration(options.lease)));
  }
  if (options.retry_after < absl::ZeroDuration()) {
    return absl::InvalidArgumentError(absl::StrCat(
        kName, ": retry_after must be >= 0, got ", absl::FormatDuration(options.retry_after)));
  }
  if (options.max_keys < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat(kName, ": max_keys must be >= 1, got ", options.max_keys));
  }
  std::unique_ptr<internal::LeaseStore> table;
  if (options.shared_region.empty()) {
    table = std::make_unique<internal::LeaseTable>(options.max_keys);
  } else {
    auto shared = internal::SharedLeaseTable::Open(options.shared_region, options.max_in_flight,
                                                   options.max_keys);
    if (!shared.ok()) {
      return absl::Status(shared.status().code(),
                          absl::StrCat(kName, ": ", shared.status().message()));
    }
    table = *std::move(shared);
  }
  return std::unique_ptr<ConcurrencyLimiter>(
      new ConcurrencyLimiter(options, clock, std::move(table)));
}

ConcurrencyLimiter::ConcurrencyLimiter(const Options& options, const Clock* clock,
                                       std::unique_ptr<internal::LeaseStore> table)
    : options_(options), clock_(clock), table_(std::move(table)) {}

ConcurrencyLimiter::~ConcurrencyLimiter() = default;

ConcurrencyLimiter::Permit ConcurrencyLimiter::TryAcquire(std::string_view key) {
  return TryAcquireAt(key, clock_->NowNanos());
}

ConcurrencyLimiter::Permit ConcurrencyLimiter::TryAcquireAt(std::string_view key,
                                                            int64_t now_nanos) {
  const internal::KeyDigest digest = internal::DigestKey(key);
  const int64_t expires_at =
      SaturatingAdd(now_nanos, absl::ToInt64Nanoseconds(options_.lease));
  const internal::LeaseStore::Grant grant =
      table_->Acquire(digest, options_.max_in_flight, now_nanos, expires_at);
  Decision decision;
  decision.limit = options_.max_in_flight;
  decision.allowed = grant.lease_id != 0;
  if (decision.allowed) {
    decision.remaining = options_.max_in_flight - grant.in_flight;
    return Permit(this, digest, grant.lease_id, expires_at, decision);
  }
  decision.retry_after_nanos = std::max<int64_t>(1, absl::ToInt64Nanoseconds(options_.retry_after));
  if (grant.table_full) {
    decision.remaining = -1;
  } else {
    decision.remaining = 0;
    decision.reset_after_nanos = grant.earliest_expiry - now_nanos;  // a slot frees by then
  }
  return Permit(decision);
}

int64_t ConcurrencyLimiter::InFlight(std::string_view key) {
  return table_->InFlight(internal::DigestKey(key), clock_->NowNanos());
}

int64_t ConcurrencyLimiter::ReclaimExpired() { return table_->ReclaimExpired(clock_->NowNanos()); }

ConcurrencyLimiter::Permit::Permit(Permit&& other) noexcept
    : owner_(std::exchange(other.owner_, nullptr)),
      digest_(other.digest_),
      lease_id_(other.lease_id_),
      expires_at_nanos_(other.expires_at_nanos_),
      decision_(other.decision_) {}

ConcurrencyLimiter::Permit& ConcurrencyLimiter::Permit::operator=(Permit&& other) noexcept {
  if (this != &other) {
    (void)Release();
    owner_ = std::exchange(other.owner_, nullptr);
    digest_ = other.digest_;
    lease_id_ = other.lease_id_;
    expires_at_nanos_ = other.expires_at_nanos_;
    decision_ = other.decision_;
  }
  return *this;
}

absl::Status ConcurrencyLimiter::Permit::Release() {
  if (owner_ == nullptr) return absl::OkStatus();
  const bool held =
      std::exchange(owner_, nullptr)->table_->Release(digest_, lease_id_, expires_at_nanos_);
  if (!held) {
    return absl::FailedPreconditionError(absl::StrCat(
        kName, ": the lease expired before release and its slot was reclaimed; renew long work"));
  }
  return absl::OkStatus();
}

absl::Status ConcurrencyLimiter::Permit::Renew() {
  if (owner_ == nullptr) return Renew(absl::ZeroDuration());
  return Renew(owner_->options_.lease);
}

absl::Status ConcurrencyLimiter::Permit::Renew(absl::Duration lease) {
  if (owner_ == nullptr) {
    return absl::FailedPreconditionError(absl::StrCat(kName, ": the permit is empty"));
  }
  if (lease <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError(
        absl::StrCat(kName, ": lease must be > 0, got ", absl::FormatDuration(lease)));
  }
  const int64_t expires_at =
      SaturatingAdd(owner_->clock_->NowNanos(), absl::ToInt64Nanoseconds(lease));
  if (!owner_->table_->Renew(digest_, lease_id_, expires_at_nanos_, expires_at)) {
    owner_ = nullptr;  // the slot is gone: this permit no longer holds anything
    return absl::FailedPreconditionError(
        absl::StrCat(kName, ": the lease expired and its slot was reclaimed"));
  }
  expires_at_nanos_ = expires_at;
  return absl::OkStatus();
}

}  // namespace v1
}  // namespace sluice
