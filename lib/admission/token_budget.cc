#include "sluice/token_budget.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "admission/admission_options.h"
#include "admission/redis_gcra.h"
#include "admission/gcra.h"

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
  if (options.cluster.store != nullptr && options.cluster.mode != ClusterMode::kStrict) {
    return absl::InvalidArgumentError(absl::StrCat(
        kName, ": cluster.mode must be kStrict (reservations are sized per request)"));
  }
  auto cluster = internal::OpenClusterCells(kName, options.shared_region, options.cluster,
                                            options.windows, clock);
  if (!cluster.ok()) return cluster.status();
  auto shared =
      internal::OpenSharedCells(kName, options.shared_region, *windows, options.max_keys);
  if (!shared.ok()) return shared.status();
  return std::unique_ptr<TokenBudget>(new TokenBudget(
      options, std::make_unique<internal::GcraKeyedState>(*std::move(windows), options.max_keys,
                                                          clock, *std::move(shared)),
      *std::move(cluster)));
}

TokenBudget::TokenBudget(const Options& options, std::unique_ptr<internal::GcraKeyedState> state,
                         std::unique_ptr<internal::ClusterGcra> cluster)
    : options_(options), state_(std::move(state)), cluster_(std::move(cluster)) {}

TokenBudget::~TokenBudget() = default;

absl::StatusOr<TokenBudget::Reservation> TokenBudget::TryReserve(std::string_view key,
                                                              int64_t estimate) {
  return TryReserveAt(key, estimate, state_->clock().NowNanos());
}

absl::StatusOr<TokenBudget::Reservation> TokenBudget::TryReserveAt(std::string_view key,
                                                                int64_t estimate,
                                                                int64_t now_nanos) {
  if (absl::Status s = internal::CheckCost(kName, "estimate", estimate, true, state_->windows());
      !s.ok()) {
    return s;
  }
  const internal::KeyDigest digest = internal::DigestKey(key);
  Decision decision;
  if (cluster_ != nullptr) {  // the Redis server's clock decides
    absl::StatusOr<Decision> d = cluster_->Finish(
        digest, estimate,
        cluster_->Start(digest, estimate, /*want_fd=*/false)->Wait(cluster_->reply_timeout()));
    if (!d.ok()) return d.status();
    decision = *d;
  } else if (absl::Status s = state_->Admit(digest, estimate, now_nanos, &decision); !s.ok()) {
    return s;
  }
  if (!decision.allowed) return Reservation(decision);
  return Reservation(this, digest, estimate, decision);
}

absl::StatusOr<Pending<TokenBudget::Reservation>> TokenBudget::StartReserve(std::string_view key,
                                                                             int64_t estimate) {
  if (cluster_ == nullptr) {
    absl::StatusOr<Reservation> r = TryReserve(key, estimate);
    if (!r.ok()) return r.status();
    return Pending<Reservation>(*std::move(r));
  }
  if (absl::Status s = internal::CheckCost(kName, "estimate", estimate, true, state_->windows());
      !s.ok()) {
    return s;
  }
  const internal::KeyDigest digest = internal::DigestKey(key);
  return Pending<Reservation>(
      cluster_->Start(digest, estimate, /*want_fd=*/true), cluster_->reply_timeout(),
      [this, digest, estimate](const auto& reply, absl::Status* error) {
        const Decision decision =
            cluster_->OrRefusal(cluster_->Finish(digest, estimate, reply), error);
        if (!decision.allowed) return Reservation(decision);
        return Reservation(this, digest, estimate, decision);
      });
}

absl::StatusOr<PendingDecision> TokenBudget::StartCharge(std::string_view key, int64_t tokens) {
  if (tokens < 0) {
    return absl::InvalidArgumentError(absl::StrCat(kName, ": tokens must be >= 0, got ", tokens));
  }
  const internal::KeyDigest digest = internal::DigestKey(key);
  if (cluster_ != nullptr) return StartAdjust(digest, tokens);
  absl::StatusOr<Decision> d = Adjust(digest, tokens, state_->clock().NowNanos());
  if (!d.ok()) return d.status();
  return PendingDecision(*d);
}

PendingDecision TokenBudget::StartAdjust(const internal::KeyDigest& digest, int64_t delta) {
  internal::ClusterGcra* cluster = cluster_.get();
  return PendingDecision(cluster->StartAdjust(digest, delta, /*want_fd=*/true),
                         cluster->reply_timeout(),
                         [cluster, digest, delta](const auto& reply, absl::Status* error) {
                           return cluster->OrRefusal(cluster->FinishAdjust(digest, delta, reply),
                                                     error);
                         });
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
  if (cluster_ != nullptr) {  // the Redis server's clock decides
    return cluster_->FinishAdjust(digest, delta,
                                  cluster_->StartAdjust(digest, delta, /*want_fd=*/false)
                                      ->Wait(cluster_->reply_timeout()));
  }
  Decision decision;
  if (absl::Status s = state_->Adjust(digest, delta, now_nanos, &decision); !s.ok()) return s;
  return decision;
}

Decision TokenBudget::Peek(std::string_view key) { return StartPeek(key).Get(); }

PendingDecision TokenBudget::StartPeek(std::string_view key) {
  const internal::KeyDigest digest = internal::DigestKey(key);
  if (cluster_ == nullptr) return PendingDecision(state_->Peek(digest, state_->clock().NowNanos()));
  internal::ClusterGcra* cluster = cluster_.get();
  return PendingDecision(cluster->StartPeek(digest, /*want_fd=*/true), cluster->reply_timeout(),
                         [cluster, digest](const auto& reply, absl::Status* error) {
                           return cluster->OrRefusal(cluster->FinishPeek(digest, reply), error);
                         });
}

int64_t TokenBudget::failure_mode_decisions() const {
  return cluster_ == nullptr ? 0 : cluster_->failure_decisions();
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
  TokenBudget* owner = std::exchange(owner_, nullptr);
  if (owner->cluster_ != nullptr) return owner->StartAdjust(digest_, actual - estimate_);
  absl::StatusOr<Decision> balance =
      owner->Adjust(digest_, actual - estimate_, owner->state_->clock().NowNanos());
  if (!balance.ok()) {
    owner_ = owner;  // still pending, so the caller may retry
    return balance.status();
  }
  return PendingDecision(*balance);
}

absl::StatusOr<Decision> TokenBudget::Reservation::SettleAt(int64_t actual, int64_t now_nanos) {
  if (absl::Status s = CheckSettle(actual); !s.ok()) return s;
  absl::StatusOr<Decision> balance = owner_->Adjust(digest_, actual - estimate_, now_nanos);
  if (balance.ok()) owner_ = nullptr;  // on error it stays pending, so the caller may retry
  return balance;
}

absl::Status TokenBudget::Reservation::Cancel() { return Settle(0).status(); }

}  // namespace v1
}  // namespace sluice
