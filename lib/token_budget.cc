#include "sluice/token_budget.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "admission_options.h"
#include "gcra.h"

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
  auto shared =
      internal::OpenSharedCells(kName, options.shared_region, *windows, options.max_keys);
  if (!shared.ok()) return shared.status();
  return std::unique_ptr<TokenBudget>(new TokenBudget(
      options, std::make_unique<internal::GcraKeyedState>(*std::move(windows), options.max_keys,
                                                          clock, *std::move(shared))));
}

TokenBudget::TokenBudget(const Options& options, std::unique_ptr<internal::GcraKeyedState> state)
    : options_(options), state_(std::move(state)) {}

TokenBudget::~TokenBudget() = default;

absl::StatusOr<TokenBudget::Reservation> TokenBudget::Reserve(std::string_view key,
                                                              int64_t estimate) {
  return ReserveAt(key, estimate, state_->clock().NowNanos());
}

absl::StatusOr<TokenBudget::Reservation> TokenBudget::ReserveAt(std::string_view key,
                                                                int64_t estimate,
                                                                int64_t now_nanos) {
  if (absl::Status s = internal::CheckCost(kName, "estimate", estimate, true, state_->windows());
      !s.ok()) {
    return s;
  }
  const internal::KeyDigest digest = internal::DigestKey(key);
  Decision decision;
  if (absl::Status s = state_->Admit(digest, estimate, now_nanos, &decision); !s.ok()) return s;
  if (!decision.allowed) return Reservation(decision);
  return Reservation(this, digest, estimate, decision);
}

absl::StatusOr<Decision> TokenBudget::Charge(std::string_view key, int64_t tokens) {
  return ChargeAt(key, tokens, state_->clock().NowNanos());
}

absl::StatusOr<Decision> TokenBudget::ChargeAt(std::string_view key, int64_t tokens,
                                               int64_t now_nanos) {
  if (tokens < 0) {
    return absl::InvalidArgumentError(absl::StrCat(kName, ": tokens must be >= 0, got ", tokens));
  }
  return Adjust(internal::DigestKey(key), tokens, now_nanos);
}

absl::StatusOr<Decision> TokenBudget::Adjust(const internal::KeyDigest& digest, int64_t delta,
                                             int64_t now_nanos) {
  Decision decision;
  if (absl::Status s = state_->Adjust(digest, delta, now_nanos, &decision); !s.ok()) return s;
  return decision;
}

Decision TokenBudget::Peek(std::string_view key) {
  return state_->Peek(internal::DigestKey(key), state_->clock().NowNanos());
}

int64_t TokenBudget::DropIdleKeys() { return state_->DropIdle(state_->clock().NowNanos()); }
int64_t TokenBudget::key_count() const { return state_->key_count(); }

TokenBudget::Reservation::Reservation(Reservation&& other) noexcept
    : owner_(std::exchange(other.owner_, nullptr)),
      digest_(other.digest_),
      estimate_(other.estimate_),
      decision_(other.decision_) {}

TokenBudget::Reservation& TokenBudget::Reservation::operator=(Reservation&& other) noexcept {
  if (this != &other) {
    owner_ = std::exchange(other.owner_, nullptr);
    digest_ = other.digest_;
    estimate_ = other.estimate_;
    decision_ = other.decision_;
  }
  return *this;
}

absl::StatusOr<Decision> TokenBudget::Reservation::Settle(int64_t actual) {
  if (owner_ == nullptr) return SettleAt(actual, 0);  // reports the precondition failure
  return SettleAt(actual, owner_->state_->clock().NowNanos());
}

absl::StatusOr<Decision> TokenBudget::Reservation::SettleAt(int64_t actual, int64_t now_nanos) {
  if (owner_ == nullptr) {
    return absl::FailedPreconditionError(absl::StrCat(
        kName, ": the reservation is not pending (it was refused, settled or cancelled)"));
  }
  if (actual < 0) {
    return absl::InvalidArgumentError(absl::StrCat(kName, ": actual must be >= 0, got ", actual));
  }
  absl::StatusOr<Decision> balance = owner_->Adjust(digest_, actual - estimate_, now_nanos);
  if (balance.ok()) owner_ = nullptr;  // on error it stays pending, so the caller may retry
  return balance;
}

absl::Status TokenBudget::Reservation::Cancel() { return Settle(0).status(); }

}  // namespace v1
}  // namespace sluice
