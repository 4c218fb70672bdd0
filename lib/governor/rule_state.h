// Internal: one rule's limiters (built from its RuleSpec in the rule's scope), its per-key
// limits (the policy's key_limits and the runtime table), and the taking and giving back of
// one request's share. Kept across reloads while the rule's identity is unchanged.
#ifndef SLUICE_LIB_GOVERNOR_RULE_STATE_H_
#define SLUICE_LIB_GOVERNOR_RULE_STATE_H_

#include <atomic>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "base/fork_hooks.h"
#include "governor/governor_metrics.h"
#include "sluice/clock.h"
#include "sluice/concurrency_limiter.h"
#include "sluice/decision.h"
#include "sluice/internal/mutex.h"
#include "sluice/key_limits.h"
#include "sluice/leaky_bucket.h"
#include "sluice/policy.h"
#include "sluice/rate_limiter.h"
#include "sluice/redis_store.h"
#include "sluice/token_budget.h"

namespace sluice {
inline namespace v1 {
namespace internal {

// A key's limits, compiled for the rule's objects. Unset parts keep the rule's limits.
struct KeyOverride {
  std::optional<KeyLimits> requests;  // unset: the rule's request windows
  std::optional<KeyLimits> tokens;    // unset: the rule's token windows
  int64_t concurrency = 0;            // 0: the rule's cap
};

// What a request took from one rule: kept by the Admission, given back on a later refusal.
struct Taken {
  ConcurrencyLimiter::Permit permit;
  // The request window's and the shaper's admissions, kept to give them back exactly
  // (RateLimiter::Refund, LeakyBucket::Refund); with the key they were taken for.
  std::optional<Decision> request_charge;
  const KeyLimits* request_limits = nullptr;  // the override they were taken under, or null
  std::optional<Decision> shaping_charge;
  std::string key;
  std::shared_ptr<const KeyOverride> runtime_limits;  // keeps request_limits alive
  TokenBudget::Reservation reservation;
};

// The outcome of taking one rule's share.
struct RuleOutcome {
  bool allowed = false;
  Decision decision;      // the binding one of this rule's limits
  absl::Status status;    // an error that refused the request
};

// Whether decision `a` binds over `b`: a refusal over an allowance (the longer wait among
// refusals); among allowances the one with the least left relative to its limit, so the headers
// show the rule closest to refusing.
bool BindsTighter(const Decision& a, const Decision& b);

class RuleState {
 public:
  // Builds the rule's objects. `stores` resolves RuleSpec::store. Errors name `field`.
  static absl::StatusOr<std::shared_ptr<RuleState>> Create(
      const RuleSpec& spec, absl::string_view policy_name,
      const absl::flat_hash_map<std::string, std::shared_ptr<RedisStore>>& stores,
      absl::string_view field, const Clock* clock, GovernorMetrics* metrics);

  const RuleSpec& spec() const { return spec_; }
  // The rule's series (no-op handles without metrics).
  const RuleSeries& series() const { return series_; }
  // Cluster scope: decisions the failure mode made, over the rule's objects.
  int64_t failure_mode_decisions() const;
  bool has_tokens() const { return tokens_ != nullptr; }
  bool in_cluster() const { return spec_.scope == RuleScope::kCluster; }

  // Takes the request's share for `key`: a concurrency permit, a request, `tokens` tokens, a
  // shaping slot, in that order; on a refusal gives back what it took and says why. The key's
  // limits: the runtime table's, else `policy_limits` (the policy's key_limits entry covering
  // the key, or null for the rule's own).
  RuleOutcome Take(std::string_view key, int64_t tokens, const KeyOverride* policy_limits,
                   Taken* taken);
  // Gives back everything `taken` holds (a later rule refused the request).
  void GiveBack(Taken* taken);

  // The runtime per-key table (Governor::SetKeyLimits / ClearKeyLimits).
  absl::Status SetKeyLimits(std::string_view key, const RuleLimits& limits);
  void ClearKeyLimits(std::string_view key);
  // Keys with runtime limits.
  int64_t runtime_key_count() const;

  // `limits` compiled for this rule's objects (a key_limits entry or SetKeyLimits's argument).
  // Errors name `field`.
  absl::StatusOr<KeyOverride> CompileOverride(const RuleLimits& limits,
                                              absl::string_view field) const;

 private:
  RuleState(const RuleSpec& spec, const Clock* clock) : spec_(spec), clock_(clock) {}

  const RuleSpec spec_;
  const Clock* const clock_;
  RuleSeries series_;
  std::unique_ptr<ConcurrencyLimiter> concurrency_;
  std::unique_ptr<RateLimiter> requests_;
  std::unique_ptr<TokenBudget> tokens_;
  std::unique_ptr<LeakyBucket> shaping_;

  mutable Mutex mutex_;
  absl::flat_hash_map<std::string, std::shared_ptr<const KeyOverride>> runtime_;
  // Whether runtime_ has entries: read without the lock so that rules without runtime limits
  // (most) never take it.
  std::atomic<bool> has_runtime_{false};
  // fork(): mutex_ is a leaf (nothing else is taken under it), so it is held across the fork and
  // the child never sees runtime_ half-changed; the child gets a fresh one.
  ForkHooks fork_hooks_{[this]() ABSL_NO_THREAD_SAFETY_ANALYSIS { mutex_.lock(); },
                        [this]() ABSL_NO_THREAD_SAFETY_ANALYSIS { mutex_.unlock(); },
                        [this] { mutex_.ResetInForkChild(); }};
};

}  // namespace internal
}  // namespace v1
}  // namespace sluice

#endif  // SLUICE_LIB_GOVERNOR_RULE_STATE_H_
