#include "sluice/leaky_bucket.h"

#include "absl/numeric/int128.h"
#include "absl/strings/str_cat.h"
#include "admission/gcra_backend.h"

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
  absl::StatusOr<std::unique_ptr<internal::GcraBackend>> backend = internal::OpenGcraBackend(
      {.object = kName, .windows = {{options.rate, options.per, options.burst}},
       .compiled = {*window}, .scope = &options, .clock = clock,
       .no_lease_reason = "a schedule cannot be leased"});
  if (!backend.ok()) return backend.status();
  return std::unique_ptr<LeakyBucket>(new LeakyBucket(options, *std::move(backend)));
}

LeakyBucket::LeakyBucket(const Options& options, std::unique_ptr<internal::GcraBackend> backend)
    : options_(options), backend_(std::move(backend)) {}

LeakyBucket::~LeakyBucket() = default;

absl::StatusOr<Decision> LeakyBucket::TryAcquire(std::string_view key, int64_t cost) {
  return TryAcquireAt(key, cost, backend_->clock().NowNanos());
}

absl::Status LeakyBucket::CheckCost(int64_t cost) const {
  const internal::GcraWindow& w = backend_->windows()[0];
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
  return backend_->Queue(internal::DigestKey(key), cost,
                         absl::ToInt64Nanoseconds(options_.max_wait), now_nanos);
}

absl::StatusOr<PendingDecision> LeakyBucket::Start(std::string_view key, int64_t cost) {
  if (absl::Status s = CheckCost(cost); !s.ok()) return s;
  return backend_->StartQueue(internal::DigestKey(key), cost,
                              absl::ToInt64Nanoseconds(options_.max_wait),
                              backend_->clock().NowNanos());
}

absl::Status LeakyBucket::Refund(std::string_view key, int64_t cost, const Decision& booked) {
  if (absl::Status s = CheckCost(cost); !s.ok()) return s;
  if (!booked.allowed) {
    return absl::InvalidArgumentError(
        absl::StrCat(kName, ": booked.allowed is false: a refusal booked nothing to refund"));
  }
  if (booked.charged_at_nanos == Decision::kNoCharge) return absl::OkStatus();
  return backend_->Refund(internal::DigestKey(key), cost, booked.charged_at_nanos,
                          backend_->clock().NowNanos());
}

int64_t LeakyBucket::failure_mode_decisions() const { return backend_->failure_mode_decisions(); }
int64_t LeakyBucket::DropIdleKeys() { return backend_->DropIdle(backend_->clock().NowNanos()); }
int64_t LeakyBucket::key_count() const { return backend_->key_count(); }

}  // namespace v1
}  // namespace sluice
