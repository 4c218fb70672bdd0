#include "sluice/concurrency_limiter.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "admission/lease_backend.h"

namespace sluice {
inline namespace v1 {

namespace {
constexpr absl::string_view kName = "sluice.ConcurrencyLimiter";
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
  absl::StatusOr<std::unique_ptr<internal::LeaseBackend>> backend = internal::OpenLeaseBackend(
      kName, options, {options.max_in_flight, options.lease, options.retry_after, clock});
  if (!backend.ok()) return backend.status();
  return std::unique_ptr<ConcurrencyLimiter>(new ConcurrencyLimiter(options, *std::move(backend)));
}

ConcurrencyLimiter::ConcurrencyLimiter(const Options& options,
                                       std::unique_ptr<internal::LeaseBackend> backend)
    : options_(options), backend_(std::move(backend)) {}

ConcurrencyLimiter::~ConcurrencyLimiter() = default;

ConcurrencyLimiter::Permit ConcurrencyLimiter::TryAcquire(std::string_view key) {
  return TryAcquireAt(key, backend_->settings().clock->NowNanos());
}

ConcurrencyLimiter::Permit ConcurrencyLimiter::TryAcquireAt(std::string_view key,
                                                            int64_t now_nanos) {
  Permit permit;
  backend_->Acquire(internal::DigestKey(key), now_nanos, options_.max_in_flight,
                    &permit.grant_);  // filled in place
  if (permit.grant_.decision.allowed) permit.owner_ = this;
  return permit;
}

Pending<ConcurrencyLimiter::Permit> ConcurrencyLimiter::Start(std::string_view key) {
  return Start(key, options_.max_in_flight);
}

absl::Status ConcurrencyLimiter::CheckMaxInFlight(int64_t max_in_flight) const {
  if (max_in_flight < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat(kName, ": max_in_flight must be >= 1, got ", max_in_flight));
  }
  if (!options_.shared_region.empty() && options_.max_in_flight < max_in_flight) {
    return absl::InvalidArgumentError(absl::StrCat(
        kName, ": max_in_flight must be at most Options::max_in_flight (", options_.max_in_flight,
        ": the host region's slots per key) in host scope, got ", max_in_flight));
  }
  return absl::OkStatus();
}

ConcurrencyLimiter::Permit ConcurrencyLimiter::TryAcquire(std::string_view key,
                                                          int64_t max_in_flight) {
  return TryAcquireAt(key, max_in_flight, backend_->settings().clock->NowNanos());
}

ConcurrencyLimiter::Permit ConcurrencyLimiter::TryAcquireAt(std::string_view key,
                                                            int64_t max_in_flight,
                                                            int64_t now_nanos) {
  Permit permit;
  if (absl::Status s = CheckMaxInFlight(max_in_flight); !s.ok()) {
    permit.grant_.error = s;
    return permit;
  }
  backend_->Acquire(internal::DigestKey(key), now_nanos, max_in_flight, &permit.grant_);
  if (permit.grant_.decision.allowed) permit.owner_ = this;
  return permit;
}

Pending<ConcurrencyLimiter::Permit> ConcurrencyLimiter::Start(std::string_view key,
                                                              int64_t max_in_flight) {
  if (absl::Status s = CheckMaxInFlight(max_in_flight); !s.ok()) {
    internal::LeaseGrant refused;
    refused.error = s;
    return Pending<Permit>(MakePermit(refused), s);
  }
  return backend_->StartAcquire(
      internal::DigestKey(key), backend_->settings().clock->NowNanos(), max_in_flight,
      /*want_fd=*/true, [this](const internal::LeaseGrant& grant) { return MakePermit(grant); });
}

ConcurrencyLimiter::Permit ConcurrencyLimiter::MakePermit(const internal::LeaseGrant& grant) {
  Permit permit(grant);
  if (grant.decision.allowed) permit.owner_ = this;
  return permit;
}

int64_t ConcurrencyLimiter::InFlight(std::string_view key) { return StartInFlight(key).Get(); }

Pending<int64_t> ConcurrencyLimiter::StartInFlight(std::string_view key) {
  return backend_->StartInFlight(internal::DigestKey(key), backend_->settings().clock->NowNanos());
}

int64_t ConcurrencyLimiter::ReclaimExpired() {
  return backend_->ReclaimExpired(backend_->settings().clock->NowNanos());
}

int64_t ConcurrencyLimiter::failure_mode_decisions() const {
  return backend_->failure_mode_decisions();
}

ConcurrencyLimiter::Permit::Permit(Permit&& other) noexcept
    : owner_(std::exchange(other.owner_, nullptr)),
      grant_(std::move(other.grant_)) {}

ConcurrencyLimiter::Permit& ConcurrencyLimiter::Permit::operator=(Permit&& other) noexcept {
  if (this != &other) {
    (void)Release();
    owner_ = std::exchange(other.owner_, nullptr);
    grant_ = std::move(other.grant_);
  }
  return *this;
}

absl::Status ConcurrencyLimiter::Permit::Release() {
  if (owner_ == nullptr) return absl::OkStatus();
  return std::exchange(owner_, nullptr)->backend_->Release(grant_.lease);
}

absl::Status ConcurrencyLimiter::Permit::Renew() {
  if (owner_ == nullptr) return Renew(absl::ZeroDuration());
  return Renew(owner_->options_.lease);
}

absl::Status ConcurrencyLimiter::Permit::CheckRenew(absl::Duration lease) const {
  if (owner_ == nullptr) {
    return absl::FailedPreconditionError(absl::StrCat(kName, ": the permit is empty"));
  }
  if (lease <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError(
        absl::StrCat(kName, ": lease must be > 0, got ", absl::FormatDuration(lease)));
  }
  return absl::OkStatus();
}

absl::Status ConcurrencyLimiter::Permit::Renew(absl::Duration lease) {
  Pending<absl::Status> pending = StartRenew(lease);
  absl::Status renewed = pending.Get();
  // Only "expired" frees the permit; a configuration error (say, READONLY) keeps it.
  if (absl::IsFailedPrecondition(renewed) && pending.status().ok() && owner_ != nullptr) {
    owner_ = nullptr;  // the slot is gone: this permit no longer holds anything
  }
  return renewed;
}

Pending<absl::Status> ConcurrencyLimiter::Permit::StartRenew() {
  return StartRenew(owner_ == nullptr ? absl::ZeroDuration() : owner_->options_.lease);
}

Pending<absl::Status> ConcurrencyLimiter::Permit::StartRenew(absl::Duration lease) {
  if (absl::Status s = CheckRenew(lease); !s.ok()) return Pending<absl::Status>(s);
  internal::LeaseBackend& backend = *owner_->backend_;
  return backend.StartRenew(&grant_.lease, lease, backend.settings().clock->NowNanos());
}

}  // namespace v1
}  // namespace sluice
