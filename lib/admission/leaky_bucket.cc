#include "sluice/leaky_bucket.h"

#include "absl/numeric/int128.h"
#include "absl/strings/str_cat.h"
#include "admission/admission_options.h"
#include "admission/redis_gcra.h"
#include "admission/gcra.h"

namespace sluice {
inline namespace v1 {

namespace {
constexpr absl::string_view kName = "sluice.LeakyBucket";
constexpr absl::Duration kMaxMaxWait = absl::Hours(24 * 366);
}  // namespace

absl::StatusOr<std::unique_ptr<LeakyBucket>> LeakyBucket::Create(const Options& options,
                                                                 const Clock* clock) {
  if (clock == nullptr) return absl::InvalidArgumentError("sluice.LeakyBucket: clock is null");
  if (options.burst < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat(kName, ": burst must be >= 1, got ", options.burst));
  }
  if (options.max_wait < absl::ZeroDuration() || options.max_wait > kMaxMaxWait) {
    return absl::InvalidArgumentError(absl::StrCat(
        kName, ": max_wait must be between 0 and 366 days, got ",
        absl::FormatDuration(options.max_wait)));
  }
  // The bucket's rate is a GCRA window whose burst is the bucket's burst.
  absl::StatusOr<internal::GcraWindow> window = internal::CompileWindow(
      {options.rate, options.per, options.burst}, absl::StrCat(kName, ": "),
      {.limit = "rate", .period = "per", .burst = "burst"});
  if (!window.ok()) return window.status();
  if (options.max_keys < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat(kName, ": max_keys must be >= 1, got ", options.max_keys));
  }
  if (options.cluster.store != nullptr && options.cluster.mode != ClusterMode::kStrict) {
    return absl::InvalidArgumentError(
        absl::StrCat(kName, ": cluster.mode must be kStrict (a schedule cannot be leased)"));
  }
  auto cluster = internal::OpenClusterCells(kName, options.shared_region, options.cluster,
                                            {{options.rate, options.per, options.burst}}, clock);
  if (!cluster.ok()) return cluster.status();
  std::vector<internal::GcraWindow> windows = {*window};
  auto shared = internal::OpenSharedCells(kName, options.shared_region, windows, options.max_keys);
  if (!shared.ok()) return shared.status();
  return std::unique_ptr<LeakyBucket>(new LeakyBucket(
      options, std::make_unique<internal::GcraKeyedState>(std::move(windows), options.max_keys,
                                                          clock, *std::move(shared)),
      *std::move(cluster)));
}

LeakyBucket::LeakyBucket(const Options& options, std::unique_ptr<internal::GcraKeyedState> state,
                         std::unique_ptr<internal::ClusterGcra> cluster)
    : options_(options), state_(std::move(state)), cluster_(std::move(cluster)) {}

LeakyBucket::~LeakyBucket() = default;

absl::StatusOr<Decision> LeakyBucket::TryAcquire(std::string_view key, int64_t cost) {
  return TryAcquireAt(key, cost, state_->clock().NowNanos());
}

absl::Status LeakyBucket::CheckCost(int64_t cost) const {
  const internal::GcraWindow& w = state_->windows()[0];
  // The longest wait `cost` can ever need is from an idle bucket: (cost - burst) intervals.
  absl::int128 needed = static_cast<absl::int128>(cost) * w.unit - w.tolerance;
  if (cost < 1 || needed > static_cast<absl::int128>(absl::ToInt64Nanoseconds(options_.max_wait)) *
                               w.scale) {
    return absl::InvalidArgumentError(absl::StrCat(
        kName, ": cost ", cost, " can never fit: it needs at least 1 and at most burst + ",
        "max_wait * rate / per units"));
  }
  return absl::OkStatus();
}

absl::StatusOr<Decision> LeakyBucket::TryAcquireAt(std::string_view key, int64_t cost,
                                                int64_t now_nanos) {
  if (absl::Status s = CheckCost(cost); !s.ok()) return s;
  const internal::KeyDigest digest = internal::DigestKey(key);
  const int64_t max_wait = absl::ToInt64Nanoseconds(options_.max_wait);
  if (cluster_ != nullptr) {  // the Redis server's clock decides
    auto reply = cluster_->StartQueue(digest, cost, max_wait, /*want_fd=*/false)
                     ->Wait(cluster_->reply_timeout());
    return cluster_->FinishQueue(digest, cost, max_wait, reply);  // the error, if not transport
  }
  Decision decision;
  absl::Status s = state_->Queue(digest, cost, max_wait, now_nanos, &decision);
  if (!s.ok()) return s;
  return decision;
}

absl::StatusOr<PendingDecision> LeakyBucket::Start(std::string_view key, int64_t cost) {
  if (cluster_ == nullptr) {
    absl::StatusOr<Decision> d = TryAcquire(key, cost);
    if (!d.ok()) return d.status();
    return PendingDecision(*d);
  }
  if (absl::Status s = CheckCost(cost); !s.ok()) return s;
  const internal::KeyDigest digest = internal::DigestKey(key);
  const int64_t max_wait = absl::ToInt64Nanoseconds(options_.max_wait);
  internal::ClusterGcra* cluster = cluster_.get();
  return PendingDecision(cluster->StartQueue(digest, cost, max_wait, /*want_fd=*/true),
                         cluster->reply_timeout(),
                         [cluster, digest, cost, max_wait](const auto& reply,
                                                           absl::Status* error) {
                           return cluster->OrRefusal(
                               cluster->FinishQueue(digest, cost, max_wait, reply), error);
                         });
}

int64_t LeakyBucket::failure_mode_decisions() const {
  return cluster_ == nullptr ? 0 : cluster_->failure_decisions();
}

int64_t LeakyBucket::DropIdleKeys() { return state_->DropIdle(state_->clock().NowNanos()); }
int64_t LeakyBucket::key_count() const { return state_->key_count(); }

}  // namespace v1
}  // namespace sluice
