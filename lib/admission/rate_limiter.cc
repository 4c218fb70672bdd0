#include "sluice/rate_limiter.h"

#include "absl/strings/str_cat.h"

#include "admission/admission_options.h"
#include "admission/gcra_backend.h"

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
  absl::StatusOr<std::unique_ptr<internal::GcraBackend>> backend = internal::OpenGcraBackend(
      {.object = kName, .windows = options.windows, .compiled = *std::move(windows),
       .scope = &options, .clock = clock, .no_lease_reason = {}, .sliding_allowed = true});
  if (!backend.ok()) return backend.status();
  return std::unique_ptr<RateLimiter>(new RateLimiter(options, *std::move(backend)));
}

RateLimiter::RateLimiter(const Options& options, std::unique_ptr<internal::GcraBackend> backend)
    : options_(options), backend_(std::move(backend)) {}

RateLimiter::~RateLimiter() = default;

absl::StatusOr<Decision> RateLimiter::TryAcquire(std::string_view key, int64_t cost) {
  return TryAcquireAt(key, cost, backend_->clock().NowNanos());
}

absl::StatusOr<Decision> RateLimiter::TryAcquireAt(std::string_view key, int64_t cost,
                                                   int64_t now_nanos) {
  if (absl::Status s = internal::CheckCost(kName, "cost", cost, false, backend_->windows());
      !s.ok()) {
    return s;
  }
  return backend_->Admit(internal::DigestKey(key), cost, now_nanos);
}

absl::StatusOr<PendingDecision> RateLimiter::Start(std::string_view key, int64_t cost) {
  if (absl::Status s = internal::CheckCost(kName, "cost", cost, false, backend_->windows());
      !s.ok()) {
    return s;
  }
  return backend_->StartAdmit(internal::DigestKey(key), cost, backend_->clock().NowNanos());
}

bool RateLimiter::Allow(std::string_view key, int64_t cost) {
  if (cost < 1 || cost > backend_->min_burst()) return false;
  return backend_->Allow(internal::DigestKey(key), cost, backend_->clock().NowNanos());
}

std::optional<bool> RateLimiter::AllowWithoutWaiting(std::string_view key, int64_t cost) {
  if (cost < 1 || cost > backend_->min_burst()) return false;
  return backend_->AllowWithoutWaiting(internal::DigestKey(key), cost,
                                       backend_->clock().NowNanos());
}

Decision RateLimiter::Peek(std::string_view key) { return StartPeek(key).Get(); }

PendingDecision RateLimiter::StartPeek(std::string_view key) {
  return backend_->StartPeek(internal::DigestKey(key), backend_->clock().NowNanos());
}

absl::Status RateLimiter::RefundWith(std::string_view key, int64_t cost, const Decision& admitted,
                                     int64_t now_nanos, const internal::KeyWindows* limits) {
  if (absl::Status s = internal::CheckCost(kName, "cost", cost, false,
                                           limits != nullptr ? limits->gcra : backend_->windows());
      !s.ok()) {
    return s;
  }
  if (!admitted.allowed) {
    return absl::InvalidArgumentError(absl::StrCat(
        kName, ": admitted.allowed is false: a refusal charged nothing to refund"));
  }
  if (admitted.charged_at_nanos == Decision::kNoCharge) return absl::OkStatus();
  return backend_->Refund(internal::DigestKey(key), cost, admitted.charged_at_nanos, now_nanos,
                          limits);
}

absl::Status RateLimiter::Refund(std::string_view key, int64_t cost, const Decision& admitted) {
  return RefundWith(key, cost, admitted, backend_->clock().NowNanos(), nullptr);
}

absl::Status RateLimiter::RefundAt(std::string_view key, int64_t cost, const Decision& admitted,
                                   int64_t now_nanos) {
  return RefundWith(key, cost, admitted, now_nanos, nullptr);
}

absl::Status RateLimiter::Refund(std::string_view key, int64_t cost, const Decision& admitted,
                                 const KeyLimits& limits) {
  absl::StatusOr<const internal::KeyWindows*> k = Check(limits);
  if (!k.ok()) return k.status();
  return RefundWith(key, cost, admitted, backend_->clock().NowNanos(), *k);
}

absl::StatusOr<KeyLimits> RateLimiter::CompileKeyLimits(const std::vector<Window>& windows) const {
  absl::StatusOr<std::shared_ptr<const internal::KeyWindows>> k =
      backend_->CompileKeyWindows(kName, options_.windows, windows);
  if (!k.ok()) return k.status();
  return KeyLimits(*std::move(k));
}

absl::StatusOr<const internal::KeyWindows*> RateLimiter::Check(const KeyLimits& limits) const {
  return internal::CheckKeyLimits(kName, limits.compiled_, backend_->id());
}

absl::StatusOr<Decision> RateLimiter::TryAcquire(std::string_view key, int64_t cost,
                                                 const KeyLimits& limits) {
  return TryAcquireAt(key, cost, backend_->clock().NowNanos(), limits);
}

absl::StatusOr<Decision> RateLimiter::TryAcquireAt(std::string_view key, int64_t cost,
                                                   int64_t now_nanos, const KeyLimits& limits) {
  absl::StatusOr<const internal::KeyWindows*> k = Check(limits);
  if (!k.ok()) return k.status();
  if (absl::Status s = internal::CheckCost(kName, "cost", cost, false, (*k)->gcra); !s.ok()) {
    return s;
  }
  return backend_->Admit(internal::DigestKey(key), cost, now_nanos, *k);
}

bool RateLimiter::Allow(std::string_view key, int64_t cost, const KeyLimits& limits) {
  absl::StatusOr<const internal::KeyWindows*> k = Check(limits);
  if (!k.ok() || cost < 1 || cost > (*k)->min_burst) return false;
  return backend_->Allow(internal::DigestKey(key), cost, backend_->clock().NowNanos(), *k);
}

std::optional<bool> RateLimiter::AllowWithoutWaiting(std::string_view key, int64_t cost,
                                                     const KeyLimits& limits) {
  absl::StatusOr<const internal::KeyWindows*> k = Check(limits);
  if (!k.ok() || cost < 1 || cost > (*k)->min_burst) return false;
  return backend_->AllowWithoutWaiting(internal::DigestKey(key), cost,
                                       backend_->clock().NowNanos(), *k);
}

absl::StatusOr<PendingDecision> RateLimiter::Start(std::string_view key, int64_t cost,
                                                   const KeyLimits& limits) {
  absl::StatusOr<const internal::KeyWindows*> k = Check(limits);
  if (!k.ok()) return k.status();
  if (absl::Status s = internal::CheckCost(kName, "cost", cost, false, (*k)->gcra); !s.ok()) {
    return s;
  }
  return backend_->StartAdmit(internal::DigestKey(key), cost, backend_->clock().NowNanos(), *k);
}

absl::StatusOr<Decision> RateLimiter::Peek(std::string_view key, const KeyLimits& limits) {
  absl::StatusOr<PendingDecision> pending = StartPeek(key, limits);
  if (!pending.ok()) return pending.status();
  return pending->Get();
}

absl::StatusOr<PendingDecision> RateLimiter::StartPeek(std::string_view key,
                                                       const KeyLimits& limits) {
  absl::StatusOr<const internal::KeyWindows*> k = Check(limits);
  if (!k.ok()) return k.status();
  return backend_->StartPeek(internal::DigestKey(key), backend_->clock().NowNanos(), *k);
}

int64_t RateLimiter::DropIdleKeys() { return backend_->DropIdle(backend_->clock().NowNanos()); }
int64_t RateLimiter::key_count() const { return backend_->key_count(); }
int64_t RateLimiter::memory_bytes() const { return backend_->memory_bytes(); }
int64_t RateLimiter::failure_mode_decisions() const { return backend_->failure_mode_decisions(); }
int64_t RateLimiter::leased_local_decisions() const { return backend_->local_decisions(); }
int64_t RateLimiter::lease_round_trips() const { return backend_->round_trips(); }

}  // namespace v1
}  // namespace sluice
