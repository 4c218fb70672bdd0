#include "sluice/token_budget.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "admission/admission_options.h"
#include "admission/gcra_backend.h"
#include "admission/mapped_pending.h"

namespace sluice {
inline namespace v1 {

namespace {
constexpr absl::string_view kName = "sluice.TokenBudget";
}  // namespace

absl::StatusOr<std::unique_ptr<TokenBudget>> TokenBudget::Create(const Options& options,
                                                                 const Clock* clock) {
  if (clock == nullptr) return absl::InvalidArgumentError("sluice.TokenBudget: clock is null");
  absl::StatusOr<std::vector<internal::GcraWindow>> windows =
      internal::CompileWindows(kName, options.windows, options.max_keys);
  if (!windows.ok()) return windows.status();
  absl::StatusOr<std::unique_ptr<internal::GcraBackend>> backend = internal::OpenGcraBackend(
      {.object = kName, .windows = options.windows, .compiled = *std::move(windows),
       .scope = &options, .clock = clock,
       .no_lease_reason = "reservations are sized per request"});
  if (!backend.ok()) return backend.status();
  return std::unique_ptr<TokenBudget>(new TokenBudget(options, *std::move(backend)));
}

TokenBudget::TokenBudget(const Options& options, std::unique_ptr<internal::GcraBackend> backend)
    : options_(options), backend_(std::move(backend)) {}

TokenBudget::~TokenBudget() = default;

absl::StatusOr<TokenBudget::Reservation> TokenBudget::TryReserve(std::string_view key,
                                                              int64_t estimate) {
  return TryReserveAt(key, estimate, backend_->clock().NowNanos());
}

absl::StatusOr<TokenBudget::Reservation> TokenBudget::TryReserveAt(std::string_view key,
                                                                int64_t estimate,
                                                                int64_t now_nanos) {
  if (absl::Status s = internal::CheckCost(kName, "estimate", estimate, true, backend_->windows());
      !s.ok()) {
    return s;
  }
  const internal::KeyDigest digest = internal::DigestKey(key);
  absl::StatusOr<Decision> decision = backend_->Admit(digest, estimate, now_nanos);
  if (!decision.ok()) return decision.status();
  if (!decision->allowed) return Reservation(*decision);
  return Reservation(this, digest, estimate, *decision);
}

absl::StatusOr<Pending<TokenBudget::Reservation>> TokenBudget::StartReserve(std::string_view key,
                                                                             int64_t estimate) {
  if (absl::Status s = internal::CheckCost(kName, "estimate", estimate, true, backend_->windows());
      !s.ok()) {
    return s;
  }
  const internal::KeyDigest digest = internal::DigestKey(key);
  absl::StatusOr<PendingDecision> pending =
      backend_->StartAdmit(digest, estimate, backend_->clock().NowNanos());
  if (!pending.ok()) return pending.status();
  return internal::MapPending<Reservation>(
      *std::move(pending), std::function<Reservation(Decision)>(
                               [this, digest, estimate](const Decision& decision) {
                                 if (!decision.allowed) return Reservation(decision);
                                 return Reservation(this, digest, estimate, decision);
                               }));
}

absl::StatusOr<PendingDecision> TokenBudget::StartCharge(std::string_view key, int64_t tokens) {
  if (tokens < 0) {
    return absl::InvalidArgumentError(absl::StrCat(kName, ": tokens must be >= 0, got ", tokens));
  }
  return backend_->StartAdjust(internal::DigestKey(key), tokens, backend_->clock().NowNanos());
}

absl::StatusOr<Decision> TokenBudget::Charge(std::string_view key, int64_t tokens) {
  return ChargeAt(key, tokens, backend_->clock().NowNanos());
}

absl::StatusOr<Decision> TokenBudget::ChargeAt(std::string_view key, int64_t tokens,
                                               int64_t now_nanos) {
  if (tokens < 0) {
    return absl::InvalidArgumentError(absl::StrCat(kName, ": tokens must be >= 0, got ", tokens));
  }
  return backend_->Adjust(internal::DigestKey(key), tokens, now_nanos);
}

Decision TokenBudget::Peek(std::string_view key) { return StartPeek(key).Get(); }

PendingDecision TokenBudget::StartPeek(std::string_view key) {
  return backend_->StartPeek(internal::DigestKey(key), backend_->clock().NowNanos());
}

absl::StatusOr<KeyLimits> TokenBudget::CompileKeyLimits(const std::vector<Window>& windows) const {
  absl::StatusOr<std::shared_ptr<const internal::KeyWindows>> k =
      backend_->CompileKeyWindows(kName, options_.windows, windows);
  if (!k.ok()) return k.status();
  return KeyLimits(*std::move(k));
}

absl::StatusOr<const internal::KeyWindows*> TokenBudget::Check(const KeyLimits& limits) const {
  return internal::CheckKeyLimits(kName, limits.compiled_, backend_->id());
}

absl::StatusOr<TokenBudget::Reservation> TokenBudget::TryReserve(std::string_view key,
                                                                 int64_t estimate,
                                                                 const KeyLimits& limits) {
  return TryReserveAt(key, estimate, backend_->clock().NowNanos(), limits);
}

absl::StatusOr<TokenBudget::Reservation> TokenBudget::TryReserveAt(std::string_view key,
                                                                   int64_t estimate,
                                                                   int64_t now_nanos,
                                                                   const KeyLimits& limits) {
  absl::StatusOr<const internal::KeyWindows*> k = Check(limits);
  if (!k.ok()) return k.status();
  if (absl::Status s = internal::CheckCost(kName, "estimate", estimate, true, (*k)->gcra);
      !s.ok()) {
    return s;
  }
  const internal::KeyDigest digest = internal::DigestKey(key);
  absl::StatusOr<Decision> decision = backend_->Admit(digest, estimate, now_nanos, *k);
  if (!decision.ok()) return decision.status();
  if (!decision->allowed) return Reservation(*decision);
  return Reservation(this, digest, estimate, *decision, limits.compiled_);
}

absl::StatusOr<Pending<TokenBudget::Reservation>> TokenBudget::StartReserve(
    std::string_view key, int64_t estimate, const KeyLimits& limits) {
  absl::StatusOr<const internal::KeyWindows*> k = Check(limits);
  if (!k.ok()) return k.status();
  if (absl::Status s = internal::CheckCost(kName, "estimate", estimate, true, (*k)->gcra);
      !s.ok()) {
    return s;
  }
  const internal::KeyDigest digest = internal::DigestKey(key);
  absl::StatusOr<PendingDecision> pending =
      backend_->StartAdmit(digest, estimate, backend_->clock().NowNanos(), *k);
  if (!pending.ok()) return pending.status();
  std::shared_ptr<const internal::KeyWindows> kept = limits.compiled_;
  return internal::MapPending<Reservation>(
      *std::move(pending), std::function<Reservation(Decision)>(
                               [this, digest, estimate, kept](const Decision& decision) {
                                 if (!decision.allowed) return Reservation(decision);
                                 return Reservation(this, digest, estimate, decision, kept);
                               }));
}

absl::StatusOr<Decision> TokenBudget::Charge(std::string_view key, int64_t tokens,
                                             const KeyLimits& limits) {
  absl::StatusOr<const internal::KeyWindows*> k = Check(limits);
  if (!k.ok()) return k.status();
  if (tokens < 0) {
    return absl::InvalidArgumentError(absl::StrCat(kName, ": tokens must be >= 0, got ", tokens));
  }
  return backend_->Adjust(internal::DigestKey(key), tokens, backend_->clock().NowNanos(), *k);
}

absl::StatusOr<Decision> TokenBudget::Peek(std::string_view key, const KeyLimits& limits) {
  absl::StatusOr<const internal::KeyWindows*> k = Check(limits);
  if (!k.ok()) return k.status();
  return backend_->StartPeek(internal::DigestKey(key), backend_->clock().NowNanos(), *k).Get();
}

int64_t TokenBudget::failure_mode_decisions() const { return backend_->failure_mode_decisions(); }
int64_t TokenBudget::DropIdleKeys() { return backend_->DropIdle(backend_->clock().NowNanos()); }
int64_t TokenBudget::key_count() const { return backend_->key_count(); }

TokenBudget::Reservation::Reservation(Reservation&& other) noexcept
    : owner_(std::exchange(other.owner_, nullptr)),
      digest_(other.digest_),
      estimate_(other.estimate_),
      decision_(other.decision_),
      limits_(std::move(other.limits_)) {}

TokenBudget::Reservation& TokenBudget::Reservation::operator=(Reservation&& other) noexcept {
  if (this != &other) {
    owner_ = std::exchange(other.owner_, nullptr);
    digest_ = other.digest_;
    estimate_ = other.estimate_;
    decision_ = other.decision_;
    limits_ = std::move(other.limits_);
  }
  return *this;
}

absl::StatusOr<Decision> TokenBudget::Reservation::Settle(int64_t actual) {
  if (owner_ == nullptr) return SettleAt(actual, 0);  // reports the precondition failure
  return SettleAt(actual, owner_->backend_->clock().NowNanos());
}

absl::Status TokenBudget::Reservation::CheckSettle(int64_t actual) const {
  if (owner_ == nullptr) {
    return absl::FailedPreconditionError(absl::StrCat(
        kName, ": the reservation is not pending (it was refused, settled or cancelled)"));
  }
  if (actual < 0) {
    return absl::InvalidArgumentError(absl::StrCat(kName, ": actual must be >= 0, got ", actual));
  }
  return absl::OkStatus();
}

absl::StatusOr<PendingDecision> TokenBudget::Reservation::StartSettle(int64_t actual) {
  if (absl::Status s = CheckSettle(actual); !s.ok()) return s;
  internal::GcraBackend& backend = *owner_->backend_;
  absl::StatusOr<PendingDecision> balance =
      backend.StartAdjust(digest_, actual - estimate_, backend.clock().NowNanos(), limits_.get());
  if (balance.ok()) owner_ = nullptr;  // on error it stays pending, so the caller may retry
  return balance;
}

absl::StatusOr<Decision> TokenBudget::Reservation::SettleAt(int64_t actual, int64_t now_nanos) {
  if (absl::Status s = CheckSettle(actual); !s.ok()) return s;
  absl::StatusOr<Decision> balance =
      owner_->backend_->Adjust(digest_, actual - estimate_, now_nanos, limits_.get());
  if (balance.ok()) owner_ = nullptr;  // on error it stays pending, so the caller may retry
  return balance;
}

absl::Status TokenBudget::Reservation::Cancel() { return Settle(0).status(); }

}  // namespace v1
}  // namespace sluice
