#include "sluice/rate_limiter.h"

#include <algorithm>

#include "absl/strings/str_cat.h"

#include "admission_options.h"
#include "cluster_gcra.h"
#include "leased_gcra.h"
#include "sluice/redis_store.h"
#include "gcra.h"

namespace sluice {
inline namespace v1 {

namespace {
constexpr absl::string_view kName = "sluice.RateLimiter";
}  // namespace

absl::StatusOr<std::unique_ptr<RateLimiter>> RateLimiter::Create(const Options& options,
                                                                 const Clock* clock) {
  if (clock == nullptr) return absl::InvalidArgumentError("sluice.RateLimiter: clock is null");
  absl::StatusOr<std::vector<internal::GcraWindow>> windows =
      internal::CompileWindows(kName, options.windows, options.max_keys);
  if (!windows.ok()) return windows.status();
  auto cluster = internal::OpenClusterCells(kName, options.shared_region, options.cluster,
                                           options.windows, clock);
  if (!cluster.ok()) return cluster.status();
  auto shared =
      internal::OpenSharedCells(kName, options.shared_region, *windows, options.max_keys);
  if (!shared.ok()) return shared.status();
  std::unique_ptr<RateLimiter> limiter(new RateLimiter(
      options,
      std::make_unique<internal::GcraKeyedState>(*std::move(windows), options.max_keys, clock,
                                                 *std::move(shared)),
      *std::move(cluster)));
  if (limiter->cluster_ != nullptr && options.cluster.mode == ClusterMode::kLeased) {
    const auto& compiled = limiter->state_->windows();
    int64_t shortest = compiled[0].period_nanos;
    for (const auto& w : compiled) shortest = std::min(shortest, w.period_nanos);
    int64_t units = options.cluster.lease_units;
    if (units == 0) units = std::max<int64_t>(1, limiter->state_->min_burst() / 100);
    if (units < 1 || units > internal::LeasedGcra::kMaxLeaseUnits) {
      return absl::InvalidArgumentError(absl::StrCat(
          kName, ": cluster.lease_units must be 0 (auto) or 1 to ",
          internal::LeasedGcra::kMaxLeaseUnits, ", got ", options.cluster.lease_units));
    }
    absl::Duration ttl = options.cluster.lease_ttl;
    if (ttl < absl::ZeroDuration()) {
      return absl::InvalidArgumentError(absl::StrCat(kName, ": cluster.lease_ttl must be >= 0"));
    }
    if (ttl == absl::ZeroDuration()) ttl = std::max(absl::Milliseconds(1), absl::Nanoseconds(shortest / 100));
    limiter->leased_ = std::make_unique<internal::LeasedGcra>(
        limiter->cluster_.get(), units, ttl, compiled[0].limit, compiled[0].period_nanos, clock,
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
    auto reply = cluster_->Start(digest, cost, /*want_fd=*/false)->Wait(cluster_->reply_timeout());
    return cluster_->Finish(digest, cost, reply);
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
    internal::LeasedGcra::Ticket ticket;
    std::shared_ptr<PendingReply> reply =
        leased_->StartLease(digest, cost, /*want_fd=*/true, &ticket);
    internal::LeasedGcra* leased = leased_.get();
    return PendingDecision(std::move(reply), cluster_->reply_timeout(),
                           [leased, digest, cost, ticket](const auto& reply) {
                             return leased->FinishLease(digest, cost, ticket, reply);
                           });
  }
  internal::ClusterGcra* cluster = cluster_.get();
  return PendingDecision(cluster_->Start(digest, cost, /*want_fd=*/true), cluster_->reply_timeout(),
                         [cluster, digest, cost](const auto& reply) {
                           return cluster->Finish(digest, cost, reply);
                         });
}

bool RateLimiter::Allow(std::string_view key, int64_t cost) {
  if (cost < 1 || cost > state_->min_burst()) return false;
  if (cluster_ != nullptr) {
    if (leased_ != nullptr) return leased_->Decide(internal::DigestKey(key), cost).allowed;
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

Decision RateLimiter::Peek(std::string_view key) {
  if (cluster_ != nullptr) {  // a zero-cost decision charges nothing
    const internal::KeyDigest digest = internal::DigestKey(key);
    return cluster_->Finish(digest, 0,
                            cluster_->Start(digest, 0, false)->Wait(cluster_->reply_timeout()));
  }
  return state_->Peek(internal::DigestKey(key), state_->clock().NowNanos());
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
