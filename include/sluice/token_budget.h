// -----------------------------------------------------------------------------
// File: sluice/token_budget.h
// -----------------------------------------------------------------------------
//
// `TokenBudget` limits LLM tokens per key over one or several windows (per minute, hour, day).
// The cost of an LLM call is known only after it ends, so the budget works in two steps:
//
//   1. `TryReserve(key, estimate)` before the call: refused if the estimate does not fit in every
//      window (the request is stopped *before* it starts, unlike Higress ai-token-ratelimit, which
//      lets the crossing request through and charges afterwards).
//   2. `Reservation::Settle(actual)` after the call (or after the stream ends): the unused part of
//      the estimate is refunded; usage beyond it is charged as *debt*, which refuses later
//      reservations until the windows have refilled past it. Nothing is lost either way.
//
// `Reservation::Cancel()` refunds everything (the call never reached the provider). A reservation
// destroyed without Settle or Cancel stays charged as estimated. `Charge(key, tokens)` charges
// after the fact without a reservation (it may put the key into debt).
//
// Windows are token buckets with the GCRA arithmetic of sluice/window.h: `limit` tokens per
// `period`, refilling continuously, at most `burst` (default: `limit`) available at once.
//
// Example:
//
//   sluice::TokenBudget::Options options;
//   options.windows = {sluice::Window::PerMinute(100'000), sluice::Window::PerDay(2'000'000)};
//   auto budget = sluice::TokenBudget::Create(options).value();
//   absl::StatusOr<sluice::TokenBudget::Reservation> r = budget->TryReserve("tenant-42", 1200);
//   if (!r.ok()) return r.status();
//   if (!*r) return TooManyRequests(r->decision().retry_after());
//   ... call the model ...
//   (void)r->Settle(usage.total_tokens);
//
// Thread-safety: safe for concurrent use by any number of threads; lock-free on the decision path.
// A Reservation is owned by one thread at a time and must not outlive its budget.

#ifndef SLUICE_TOKEN_BUDGET_H_
#define SLUICE_TOKEN_BUDGET_H_

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "sluice/clock.h"
#include "sluice/cluster.h"
#include "sluice/scope.h"
#include "sluice/decision.h"
#include "sluice/key_limits.h"
#include "sluice/pending.h"
#include "sluice/internal/key_digest.h"
#include "sluice/window.h"

namespace sluice {
inline namespace v1 {

namespace internal {
class GcraBackend;
}  // namespace internal

// sluice::TokenBudget
class TokenBudget {
 public:
  // The scope options (max_keys, shared_region, cluster) are ScopeOptions's: sluice/scope.h.
  struct Options : ScopeOptions {
    // Token windows, 1 to 8. Required.
    std::vector<Window> windows;
    // Scope notes: a host region takes SharedRegionBytesForWindows(windows.size(), max_keys)
    // bytes. In cluster scope: one budget for every host; strict mode only (kLeased is refused:
    // a reservation is sized per request, not leased); window periods must be whole
    // microseconds.
  };

  class Reservation;

  static absl::StatusOr<std::unique_ptr<TokenBudget>> Create(
      const Options& options, const Clock* clock = Clock::Steady());

  TokenBudget(const TokenBudget&) = delete;
  TokenBudget& operator=(const TokenBudget&) = delete;
  ~TokenBudget();

  // Reserves `estimate` tokens (>= 0; 0 only checks the key is not in debt) from every window.
  // The reservation is empty (false) when refused; its decision says when to retry.
  // Errors: InvalidArgument if estimate < 0 or exceeds a window's burst (it could never fit);
  // ResourceExhausted as for RateLimiter; in cluster scope, Redis configuration errors as for
  // RateLimiter::TryAcquire (Settle, Charge and Peek likewise). Thread-safe.
  absl::StatusOr<Reservation> TryReserve(std::string_view key, int64_t estimate);
  absl::StatusOr<Reservation> TryReserveAt(std::string_view key, int64_t estimate,
                                           int64_t now_nanos);
  // The names before sluice 0.2 (one verb per meaning: docs/architecture.md, "Verbs").
  [[deprecated("use TryReserve")]] absl::StatusOr<Reservation> Reserve(std::string_view key,
                                                                       int64_t estimate);
  [[deprecated("use TryReserveAt")]] absl::StatusOr<Reservation> ReserveAt(std::string_view key,
                                                                           int64_t estimate,
                                                                           int64_t now_nanos);

  // Charges `tokens` (>= 0) now, refusing nothing: the key may go into debt. The decision's
  // `allowed` says whether the key is still within budget afterwards. Thread-safe.
  absl::StatusOr<Decision> Charge(std::string_view key, int64_t tokens);
  absl::StatusOr<Decision> ChargeAt(std::string_view key, int64_t tokens, int64_t now_nanos);

  // Starts TryReserve / Charge and returns at once: in cluster scope the reply is on its way (see
  // sluice/pending.h), else it is already decided. Errors as for TryReserve / Charge (Redis
  // configuration errors in the Pending's status()). Thread-safe.
  absl::StatusOr<Pending<Reservation>> StartReserve(std::string_view key, int64_t estimate);
  absl::StatusOr<PendingDecision> StartCharge(std::string_view key, int64_t tokens);

  // The key's balance without charging: `remaining` (negative: debt), `allowed` whether one
  // more token would fit every window now, and if not `retry_after` until it would. In cluster
  // scope a round trip; a configuration error gives a refusal (StartPeek reports it).
  // Thread-safe.
  Decision Peek(std::string_view key);
  // Peek, started: returns at once (see sluice/pending.h). Thread-safe.
  PendingDecision StartPeek(std::string_view key);

  // ---- Per-key limits (see sluice/key_limits.h) -------------------------------------------------
  //
  // Compiles `windows` to replace Options::windows in the calls below: as many, each at this
  // budget's scale per window (exact() false when that rounds an emission interval up). Errors
  // (InvalidArgument) name windows[i].<field>. Thread-safe.
  absl::StatusOr<KeyLimits> CompileKeyLimits(const std::vector<Window>& windows) const;
  // TryReserve, TryReserveAt, StartReserve, Charge and Peek against `limits`, on the key's same
  // state. The reservation settles (and cancels) against the same limits. Errors as without
  // limits (the estimate against the limits' bursts), and InvalidArgument if `limits` are empty
  // or were compiled by another object. Thread-safe.
  absl::StatusOr<Reservation> TryReserve(std::string_view key, int64_t estimate,
                                         const KeyLimits& limits);
  absl::StatusOr<Reservation> TryReserveAt(std::string_view key, int64_t estimate,
                                           int64_t now_nanos, const KeyLimits& limits);
  absl::StatusOr<Pending<Reservation>> StartReserve(std::string_view key, int64_t estimate,
                                                    const KeyLimits& limits);
  absl::StatusOr<Decision> Charge(std::string_view key, int64_t tokens, const KeyLimits& limits);
  absl::StatusOr<Decision> Peek(std::string_view key, const KeyLimits& limits);

  // Cluster scope: decisions made by the failure mode because Redis did not answer. A settle
  // that Redis did not receive is applied to the kLocal stand-in only (kAllow, kDeny: dropped).
  int64_t failure_mode_decisions() const;

  int64_t DropIdleKeys();
  int64_t key_count() const;
  const Options& options() const { return options_; }

 private:
  friend class Reservation;
  TokenBudget(const Options& options, std::unique_ptr<internal::GcraBackend> backend);
  absl::StatusOr<const internal::KeyWindows*> Check(const KeyLimits& limits) const;

  Options options_;
  std::unique_ptr<internal::GcraBackend> backend_;  // the scope: process, host, Redis
};

// sluice::TokenBudget::Reservation
//
// Move-only. Converts to true when the tokens were reserved.
class TokenBudget::Reservation {
 public:
  Reservation() = default;
  Reservation(Reservation&& other) noexcept;
  Reservation& operator=(Reservation&& other) noexcept;
  Reservation(const Reservation&) = delete;
  Reservation& operator=(const Reservation&) = delete;
  ~Reservation() = default;  // unsettled: stays charged as estimated

  explicit operator bool() const { return owner_ != nullptr; }
  bool pending() const { return owner_ != nullptr; }
  const Decision& decision() const { return decision_; }
  int64_t estimate() const { return estimate_; }

  // Replaces the estimate by the real usage (>= 0): refunds the difference or charges it as
  // debt. Returns the key's balance afterwards. FailedPrecondition if already settled or
  // cancelled, or if the reservation was refused.
  absl::StatusOr<Decision> Settle(int64_t actual);
  absl::StatusOr<Decision> SettleAt(int64_t actual, int64_t now_nanos);
  // Starts Settle and returns at once (see sluice/pending.h); the reservation is settled from
  // then on. Same preconditions as Settle.
  absl::StatusOr<PendingDecision> StartSettle(int64_t actual);

  // Refunds the whole estimate. Same preconditions as Settle.
  absl::Status Cancel();

 private:
  friend class TokenBudget;
  Reservation(TokenBudget* owner, internal::KeyDigest digest, int64_t estimate,
              const Decision& decision,
              std::shared_ptr<const internal::KeyWindows> limits = nullptr)
      : owner_(owner),
        digest_(digest),
        estimate_(estimate),
        decision_(decision),
        limits_(std::move(limits)) {}
  explicit Reservation(const Decision& refused) : decision_(refused) {}
  // FailedPrecondition unless pending; InvalidArgument unless actual >= 0.
  absl::Status CheckSettle(int64_t actual) const;

  TokenBudget* owner_ = nullptr;
  internal::KeyDigest digest_;
  int64_t estimate_ = 0;
  Decision decision_;
  std::shared_ptr<const internal::KeyWindows> limits_;  // per-key limits it settles against
};

inline absl::StatusOr<TokenBudget::Reservation> TokenBudget::Reserve(std::string_view key,
                                                                     int64_t estimate) {
  return TryReserve(key, estimate);
}
inline absl::StatusOr<TokenBudget::Reservation> TokenBudget::ReserveAt(std::string_view key,
                                                                       int64_t estimate,
                                                                       int64_t now_nanos) {
  return TryReserveAt(key, estimate, now_nanos);
}

}  // namespace v1
}  // namespace sluice

#endif  // SLUICE_TOKEN_BUDGET_H_
