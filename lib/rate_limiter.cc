#include "sluice/rate_limiter.h"

#include "admission_options.h"
#include "cluster_gcra.h"
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
  std::unique_ptr<internal::ClusterGcra> cluster;
  if (options.cluster.store != nullptr) {
    if (!options.shared_region.empty()) {
      return absl::InvalidArgumentError(
          "sluice.RateLimiter: shared_region and cluster.store are two scopes; set one");
    }
    auto made = internal::ClusterGcra::Create(kName, options.cluster, options.windows, clock);
    if (!made.ok()) return made.status();
    cluster = *std::move(made);
  }
  auto shared =
      internal::OpenSharedCells(kName, options.shared_region, *windows, options.max_keys);
  if (!shared.ok()) return shared.status();
  return std::unique_ptr<RateLimiter>(new RateLimiter(
      options,
      std::make_unique<internal::GcraKeyedState>(*std::move(windows), options.max_keys, clock,
                                                 *std::move(shared)),
      std::move(cluster)));
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
  return PendingDecision(cluster_.get(), digest, cost, cluster_->Start(digest, cost, true));
}

PendingDecision::PendingDecision(const Decision& decided) : decided_(decided) {}
PendingDecision::PendingDecision(internal::ClusterGcra* cluster, internal::KeyDigest digest,
                                 int64_t cost, std::shared_ptr<PendingReply> reply)
    : cluster_(cluster), digest_(digest), cost_(cost), reply_(std::move(reply)) {}
PendingDecision::PendingDecision(PendingDecision&&) noexcept = default;
PendingDecision& PendingDecision::operator=(PendingDecision&&) noexcept = default;
PendingDecision::~PendingDecision() = default;

bool PendingDecision::done() const { return reply_ == nullptr || reply_->done(); }
int PendingDecision::fd() const { return reply_ == nullptr ? -1 : reply_->fd(); }

Decision PendingDecision::Get() {
  if (reply_ != nullptr) {
    decided_ = cluster_->Finish(digest_, cost_, reply_->Wait(cluster_->reply_timeout()));
    reply_.reset();
  }
  return decided_;
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

}  // namespace v1
}  // namespace sluice
