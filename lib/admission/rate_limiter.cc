#include "sluice/rate_limiter.h"

#include <algorithm>

#include "absl/strings/str_cat.h"

#include "admission/admission_options.h"
#include "admission/redis_gcra.h"
#include "admission/leased_gcra.h"
#include "sluice/redis_store.h"
#include "admission/gcra.h"

namespace sluice {
inline namespace v1 {

namespace {
constexpr absl::string_view kName = "sluice.RateLimiter";
}  // namespace

namespace {

// Leased mode's lease size and time to live, validated (0 means auto).
struct LeaseSettings {
  int64_t units = 0;
  absl::Duration ttl;
};
absl::StatusOr<LeaseSettings> CheckLease(const ClusterOptions& cluster,
                                         const std::vector<internal::GcraWindow>& windows) {
  int64_t shortest = windows[0].period_nanos;
  int64_t min_burst = windows[0].burst;
  for (const auto& w : windows) {
    shortest = std::min(shortest, w.period_nanos);
    min_burst = std::min(min_burst, w.burst);
  }
  LeaseSettings lease{cluster.lease_units, cluster.lease_ttl};
  if (lease.units == 0) lease.units = std::max<int64_t>(1, min_burst / 100);
  if (lease.units < 1 || lease.units > internal::LeasedGcra::kMaxLeaseUnits) {
    return absl::InvalidArgumentError(absl::StrCat(
        kName, ": cluster.lease_units must be 0 (auto) or 1 to ",
        internal::LeasedGcra::kMaxLeaseUnits, ", got ", cluster.lease_units));
  }
  // The overshoot bound is limit * ttl / period: a ttl beyond the period would make it a limit.
  const absl::Duration longest = std::max(absl::Milliseconds(1), absl::Nanoseconds(shortest));
  if (lease.ttl != absl::ZeroDuration() &&
      (lease.ttl < absl::Milliseconds(1) || lease.ttl > longest)) {
    return absl::InvalidArgumentError(absl::StrCat(
        kName, ": cluster.lease_ttl must be 0 (auto) or between 1ms and the shortest window's ",
        "period (", absl::FormatDuration(longest), "), got ", absl::FormatDuration(lease.ttl)));
  }
  if (lease.ttl == absl::ZeroDuration()) {
    lease.ttl = std::max(absl::Milliseconds(1), absl::Nanoseconds(shortest / 100));
  }
  return lease;
}

}  // namespace

absl::StatusOr<std::unique_ptr<RateLimiter>> RateLimiter::Create(const Options& options,
                                                                 const Clock* clock) {
  if (clock == nullptr) return absl::InvalidArgumentError("sluice.RateLimiter: clock is null");
  absl::StatusOr<std::vector<internal::GcraWindow>> windows =
      internal::CompileWindows(kName, options.windows, options.max_keys);
  if (!windows.ok()) return windows.status();
  const bool leased =
      options.cluster.store != nullptr && options.cluster.mode == ClusterMode::kLeased;
  absl::StatusOr<LeaseSettings> lease = LeaseSettings{};
  if (leased) lease = CheckLease(options.cluster, *windows);
  if (!lease.ok()) return lease.status();
  auto cluster = internal::OpenClusterCells(kName, options.shared_region, options.cluster,
                                           options.windows, clock);
  if (!cluster.ok()) return cluster.status();
  auto shared =
      internal::OpenSharedCells(kName, options.shared_region, *windows, options.max_keys);
  if (!shared.ok()) return shared.status();
  const internal::GcraWindow first = (*windows)[0];
  std::unique_ptr<RateLimiter> limiter(new RateLimiter(
      options,
      std::make_unique<internal::GcraKeyedState>(*std::move(windows), options.max_keys, clock,
                                                 *std::move(shared)),
      *std::move(cluster)));
  if (leased) {
    limiter->leased_ = std::make_unique<internal::LeasedGcra>(
        limiter->cluster_.get(), lease->units, lease->ttl, first.limit, first.period_nanos, clock,
        options.max_keys);
  }
  return limiter;
}

RateLimiter::RateLimiter(const Options& options, std::unique_ptr<internal::GcraKeyedState> state,
                         std::unique_ptr<internal::ClusterGcra> cluster)
    : options_(options), state_(std::move(state)), cluster_(std::move(cluster)) {}

RateLimiter::~RateLimiter() = default;

absl::StatusOr<Decision> RateLimiter::TryAcquire(std::string_view key, int64_t cost) {
  return TryAcquireAt(key, cost, state_->clock().NowNanos());
}

absl::StatusOr<Decision> RateLimiter::TryAcquireAt(std::string_view key, int64_t cost,
                                                   int64_t now_nanos) {
  if (absl::Status s = internal::CheckCost(kName, "cost", cost, false, state_->windows());
      !s.ok()) {
    return s;
  }
  const internal::KeyDigest digest = internal::DigestKey(key);
  if (leased_ != nullptr) return leased_->Decide(digest, cost);
  if (cluster_ != nullptr) {  // the Redis server's clock decides; `now_nanos` is not used
    Pending<Decision> pending = StartCluster(digest, cost, /*want_fd=*/false);
    Decision d = pending.Get();
    if (!pending.status().ok()) return pending.status();
    return d;
  }
  Decision decision;
  absl::Status s = state_->Admit(digest, cost, now_nanos, &decision);
  if (!s.ok()) return s;
  return decision;
}

absl::StatusOr<PendingDecision> RateLimiter::Start(std::string_view key, int64_t cost) {
  if (cluster_ == nullptr) {
    absl::StatusOr<Decision> d = TryAcquire(key, cost);
    if (!d.ok()) return d.status();
    return PendingDecision(*d);
  }
  if (absl::Status s = internal::CheckCost(kName, "cost", cost, false, state_->windows());
      !s.ok()) {
    return s;
  }
  const internal::KeyDigest digest = internal::DigestKey(key);
  if (leased_ != nullptr) {
    Decision local;
    if (leased_->TryLocal(digest, cost, &local)) return PendingDecision(local);
  }
  return StartCluster(digest, cost, /*want_fd=*/true);
}

PendingDecision RateLimiter::StartCluster(const internal::KeyDigest& digest, int64_t cost,
                                          bool want_fd) {
  internal::ClusterGcra* cluster = cluster_.get();
  if (leased_ != nullptr) {
    internal::LeasedGcra::Ticket ticket;
    std::shared_ptr<PendingReply> reply = leased_->StartLease(digest, cost, want_fd, &ticket);
    internal::LeasedGcra* leased = leased_.get();
    return PendingDecision(std::move(reply), cluster_->reply_timeout(),
                           [leased, cluster, digest, cost, ticket](const auto& reply,
                                                                   absl::Status* error) {
                             return cluster->OrRefusal(
                                 leased->FinishLease(digest, cost, ticket, reply), error);
                           });
  }
  return PendingDecision(cluster_->Start(digest, cost, want_fd), cluster_->reply_timeout(),
                         [cluster, digest, cost](const auto& reply, absl::Status* error) {
                           return cluster->OrRefusal(cluster->Finish(digest, cost, reply), error);
                         });
}

bool RateLimiter::Allow(std::string_view key, int64_t cost) {
  if (cost < 1 || cost > state_->min_burst()) return false;
  if (cluster_ != nullptr) {
    absl::StatusOr<Decision> d = TryAcquire(key, cost);
    return d.ok() && d->allowed;
  }
  Decision decision;
  return state_
             ->Admit(internal::DigestKey(key), cost, state_->clock().NowNanos(), &decision,
                     /*detailed=*/false)
             .ok() &&
         decision.allowed;
}

std::optional<bool> RateLimiter::AllowWithoutWaiting(std::string_view key, int64_t cost) {
  if (cluster_ == nullptr) return Allow(key, cost);
  if (leased_ == nullptr) return std::nullopt;
  if (cost < 1 || cost > state_->min_burst()) return false;
  Decision local;
  if (leased_->TryLocal(internal::DigestKey(key), cost, &local)) return local.allowed;
  return std::nullopt;
}

Decision RateLimiter::Peek(std::string_view key) { return StartPeek(key).Get(); }

PendingDecision RateLimiter::StartPeek(std::string_view key) {
  const internal::KeyDigest digest = internal::DigestKey(key);
  if (cluster_ == nullptr) return PendingDecision(state_->Peek(digest, state_->clock().NowNanos()));
  internal::ClusterGcra* cluster = cluster_.get();
  return PendingDecision(cluster->StartPeek(digest, /*want_fd=*/true), cluster->reply_timeout(),
                         [cluster, digest](const auto& reply, absl::Status* error) {
                           return cluster->OrRefusal(cluster->FinishPeek(digest, reply), error);
                         });
}

int64_t RateLimiter::DropIdleKeys() { return state_->DropIdle(state_->clock().NowNanos()); }
int64_t RateLimiter::key_count() const { return state_->key_count(); }
int64_t RateLimiter::memory_bytes() const { return state_->memory_bytes(); }
int64_t RateLimiter::failure_mode_decisions() const {
  return cluster_ == nullptr ? 0 : cluster_->failure_decisions();
}
int64_t RateLimiter::leased_local_decisions() const {
  return leased_ == nullptr ? 0 : leased_->local_decisions();
}
int64_t RateLimiter::lease_round_trips() const {
  return leased_ == nullptr ? 0 : leased_->leases();
}

}  // namespace v1
}  // namespace sluice
