#include "sluice/concurrency_limiter.h"

#include <limits>
#include <utility>

#include "absl/strings/str_cat.h"
#include "admission/redis_leases.h"
#include "stores/redis_errors.h"
#include "stores/lease_table.h"
#include "stores/shared_lease_table.h"

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
  std::unique_ptr<internal::ClusterLeases> cluster;
  if (options.cluster.store != nullptr) {
    if (!options.shared_region.empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat(kName, ": shared_region and cluster.store are two scopes; set one"));
    }
    auto made = internal::ClusterLeases::Create(kName, options.cluster, options.lease);
    if (!made.ok()) return made.status();
    cluster = *std::move(made);
  }
  std::unique_ptr<internal::LeaseStore> table;
  if (options.shared_region.empty()) {  // in cluster scope: the kLocal failure mode's leases
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
      new ConcurrencyLimiter(options, clock, std::move(table), std::move(cluster)));
}

ConcurrencyLimiter::ConcurrencyLimiter(const Options& options, const Clock* clock,
                                       std::unique_ptr<internal::LeaseStore> table,
                                       std::unique_ptr<internal::ClusterLeases> cluster)
    : options_(options), clock_(clock), table_(std::move(table)), cluster_(std::move(cluster)) {}

ConcurrencyLimiter::~ConcurrencyLimiter() = default;

ConcurrencyLimiter::Permit ConcurrencyLimiter::TryAcquire(std::string_view key) {
  return TryAcquireAt(key, clock_->NowNanos());
}

ConcurrencyLimiter::Permit ConcurrencyLimiter::TryAcquireAt(std::string_view key,
                                                            int64_t now_nanos) {
  const internal::KeyDigest digest = internal::DigestKey(key);
  if (cluster_ == nullptr) return AcquireFromTable(digest, options_.max_in_flight, now_nanos);
  return StartCluster(digest, /*want_fd=*/false).Get();
}

Pending<ConcurrencyLimiter::Permit> ConcurrencyLimiter::Start(std::string_view key) {
  if (cluster_ == nullptr) return Pending<Permit>(TryAcquire(key));
  return StartCluster(internal::DigestKey(key), /*want_fd=*/true);
}

Pending<ConcurrencyLimiter::Permit> ConcurrencyLimiter::StartCluster(
    const internal::KeyDigest& digest, bool want_fd) {
  const uint64_t lease_id = internal::ClusterLeases::NewLeaseId();
  return Pending<Permit>(
      cluster_->StartAcquire(digest, options_.max_in_flight, lease_id, want_fd),
      cluster_->reply_timeout(), [this, digest, lease_id](const auto& reply, absl::Status* error) {
        Permit permit = FinishClusterAcquire(digest, lease_id, clock_->NowNanos(), reply, error);
        permit.status_ = *error;
        return permit;
      });
}

ConcurrencyLimiter::Permit ConcurrencyLimiter::AcquireFromTable(const internal::KeyDigest& digest,
                                                                int64_t max_in_flight,
                                                                int64_t now_nanos) {
  const int64_t expires_at =
      SaturatingAdd(now_nanos, absl::ToInt64Nanoseconds(options_.lease));
  const internal::LeaseStore::Grant grant =
      table_->Acquire(digest, max_in_flight, now_nanos, expires_at);
  Decision decision;
  decision.limit = max_in_flight;
  decision.allowed = grant.lease_id != 0;
  if (decision.allowed) {
    decision.remaining = max_in_flight - grant.in_flight;
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

ConcurrencyLimiter::Permit ConcurrencyLimiter::FinishClusterAcquire(
    const internal::KeyDigest& digest, uint64_t lease_id, int64_t now_nanos,
    const absl::StatusOr<std::vector<int64_t>>& reply, absl::Status* error) {
  Decision decision;
  decision.limit = options_.max_in_flight;
  absl::Status failed = reply.status();
  if (reply.ok()) {
    absl::StatusOr<internal::ClusterLeases::Acquired> acquired = cluster_->DecodeAcquire(*reply);
    if (acquired.ok()) {
      decision.allowed = acquired->granted;
      decision.remaining = std::max<int64_t>(0, options_.max_in_flight - acquired->held);
      if (!decision.allowed) {
        decision.retry_after_nanos =
            std::max<int64_t>(1, absl::ToInt64Nanoseconds(options_.retry_after));
        decision.reset_after_nanos = acquired->micros * 1000;  // a slot frees by then
        return Permit(decision);
      }
      Permit permit(this, digest, lease_id, SaturatingAdd(now_nanos, acquired->micros * 1000),
                    decision);
      permit.holder_ = Permit::Holder::kRedis;
      return permit;
    }
    // An impossible reply: whatever it took, nobody holds; release it.
    cluster_->StartRelease(digest, lease_id, /*retry_until_nanos=*/0);
    failed = acquired.status();
  }
  if (!internal::IsTransportError(failed)) {  // Redis answered: a configuration error
    *error = failed;
    decision.retry_after_nanos =
        absl::ToInt64Nanoseconds(options_.cluster.store->options().reconnect_interval);
    return Permit(decision);
  }
  cluster_->CountFailure();
  switch (options_.cluster.on_failure) {
    case FailureMode::kAllow: {
      decision.allowed = true;
      Permit permit(this, digest, lease_id,
                    SaturatingAdd(now_nanos, absl::ToInt64Nanoseconds(options_.lease)), decision);
      permit.holder_ = Permit::Holder::kUnbacked;
      return permit;
    }
    case FailureMode::kDeny:
      decision.retry_after_nanos =
          absl::ToInt64Nanoseconds(options_.cluster.store->options().reconnect_interval);
      return Permit(decision);
    case FailureMode::kLocal:
      break;
  }
  return AcquireFromTable(
      digest, std::max<int64_t>(1, options_.max_in_flight / options_.cluster.local_share),
      clock_->NowNanos());
}

int64_t ConcurrencyLimiter::InFlight(std::string_view key) { return StartInFlight(key).Get(); }

Pending<int64_t> ConcurrencyLimiter::StartInFlight(std::string_view key) {
  const internal::KeyDigest digest = internal::DigestKey(key);
  if (cluster_ == nullptr) return Pending<int64_t>(table_->InFlight(digest, clock_->NowNanos()));
  internal::ClusterLeases* cluster = cluster_.get();
  return Pending<int64_t>(
      cluster->StartInFlight(digest, /*want_fd=*/true), cluster->reply_timeout(),
      [cluster](const auto& reply, absl::Status* error) -> int64_t {
        if (!reply.ok()) {
          if (!internal::IsTransportError(reply.status())) *error = reply.status();
          return -1;
        }
        if (reply->size() != 1 || (*reply)[0] < 0) {
          *error = cluster->Impossible("an in-flight count");
          return -1;
        }
        return (*reply)[0];
      });
}

int64_t ConcurrencyLimiter::ReclaimExpired() { return table_->ReclaimExpired(clock_->NowNanos()); }

int64_t ConcurrencyLimiter::failure_mode_decisions() const {
  return cluster_ == nullptr ? 0 : cluster_->failure_decisions();
}

ConcurrencyLimiter::Permit::Permit(Permit&& other) noexcept
    : owner_(std::exchange(other.owner_, nullptr)),
      holder_(other.holder_),
      digest_(other.digest_),
      lease_id_(other.lease_id_),
      expires_at_nanos_(other.expires_at_nanos_),
      decision_(other.decision_),
      status_(std::move(other.status_)) {}

ConcurrencyLimiter::Permit& ConcurrencyLimiter::Permit::operator=(Permit&& other) noexcept {
  if (this != &other) {
    (void)Release();
    owner_ = std::exchange(other.owner_, nullptr);
    holder_ = other.holder_;
    digest_ = other.digest_;
    lease_id_ = other.lease_id_;
    expires_at_nanos_ = other.expires_at_nanos_;
    decision_ = other.decision_;
    status_ = std::move(other.status_);
  }
  return *this;
}

absl::Status ConcurrencyLimiter::Permit::Release() {
  if (owner_ == nullptr) return absl::OkStatus();
  ConcurrencyLimiter* owner = std::exchange(owner_, nullptr);
  if (holder_ == Holder::kRedis) {
    // Sent, not awaited. If Redis cannot be reached, the store keeps it and sends it once Redis
    // answers again, until the lease would have ended anyway.
    const int64_t left = expires_at_nanos_ - owner->clock_->NowNanos();
    const int64_t now = Clock::Steady()->NowNanos();
    owner->cluster_->StartRelease(digest_, lease_id_, left > 0 ? SaturatingAdd(now, left) : 0);
    return absl::OkStatus();
  }
  if (holder_ == Holder::kUnbacked) return absl::OkStatus();
  const bool held = owner->table_->Release(digest_, lease_id_, expires_at_nanos_);
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

absl::Status ConcurrencyLimiter::Permit::CheckRenew(absl::Duration lease) const {
  if (owner_ == nullptr) {
    return absl::FailedPreconditionError(absl::StrCat(kName, ": the permit is empty"));
  }
  if (lease <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError(
        absl::StrCat(kName, ": lease must be > 0, got ", absl::FormatDuration(lease)));
  }
  if (holder_ == Holder::kRedis && lease > internal::ClusterLeases::kMaxLease) {
    return absl::InvalidArgumentError(absl::StrCat(
        kName, ": lease must be at most ", absl::FormatDuration(internal::ClusterLeases::kMaxLease),
        " in cluster scope, got ", absl::FormatDuration(lease)));
  }
  return absl::OkStatus();
}

absl::Status ConcurrencyLimiter::Permit::Renew(absl::Duration lease) {
  Pending<absl::Status> pending = StartRenew(lease);
  absl::Status renewed = pending.Get();
  // Only Redis saying "expired" frees the permit; a configuration error (say, READONLY) keeps it.
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
  const int64_t expires_at =
      SaturatingAdd(owner_->clock_->NowNanos(), absl::ToInt64Nanoseconds(lease));
  const absl::Status expired = absl::FailedPreconditionError(
      absl::StrCat(kName, ": the lease expired and its slot was reclaimed"));
  switch (holder_) {
    case Holder::kUnbacked:
      expires_at_nanos_ = expires_at;
      return Pending<absl::Status>(absl::OkStatus());
    case Holder::kTable:
      if (!owner_->table_->Renew(digest_, lease_id_, expires_at_nanos_, expires_at)) {
        return Pending<absl::Status>(expired);
      }
      expires_at_nanos_ = expires_at;
      return Pending<absl::Status>(absl::OkStatus());
    case Holder::kRedis:
      break;
  }
  expires_at_nanos_ = expires_at;  // Redis's clock rules; this is the local estimate
  return Pending<absl::Status>(
      owner_->cluster_->StartRenew(digest_, lease_id_, std::max(lease, absl::Microseconds(1)),
                                   /*want_fd=*/true),
      owner_->cluster_->reply_timeout(),
      [expired](const auto& reply, absl::Status* error) -> absl::Status {
        if (!reply.ok()) {
          if (internal::IsTransportError(reply.status())) {
            return absl::UnavailableError(
                absl::StrCat(kName, ": renew: ", reply.status().message()));
          }
          *error = reply.status();  // a configuration error: the permit is kept
          return reply.status();
        }
        if (reply->size() == 1 && (*reply)[0] == 1) return absl::OkStatus();
        if (reply->size() == 1 && (*reply)[0] == 0) return expired;
        *error = absl::InternalError(absl::StrCat(kName, ": renew: an impossible reply"));
        return *error;
      });
}

}  // namespace v1
}  // namespace sluice
