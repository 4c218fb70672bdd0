// -----------------------------------------------------------------------------
// File: sluice/governor.h
// -----------------------------------------------------------------------------
//
// `Governor` runs a `Policy` (sluice/policy.h): one object that owns every rule's limiters, the
// upstream balancers, the fallback chains and the response cache, and one call per request.
//
//   Admit(request)   every rule whose match holds applies; the request passes only if all
//                    pass, and a refusal charges none (what earlier rules took is given back).
//                    The Admission holds the permits and token reservations it took.
//   Admission        allowed() / decision() / Headers(): the binding rule's RateLimit and
//                    Retry-After headers; delay(): shaping's wait before sending;
//                    CachedAnswer() / StoreAnswer(): the response cache, namespaced by the
//                    policy's attributes (the tenant unless the policy shares answers);
//                    BeginCall(): the fallback attempt loop, with balancer picks, for the
//                    request's model; Settle(usage): token reservations settled with the
//                    provider's usage (sluice/usage.h). Its destructor releases what is left.
//   MetricsText()    Prometheus text of every object it owns (host-wide with a shared region).
//   Reload(policy)   swaps the policy atomically; rules whose identity (name, key, scope) and
//                    limits are unchanged keep their state, others start fresh; an invalid
//                    policy is refused with its errors and the old one keeps running.
//   SetKeyLimits     a rule's limits for one key value at run time (plans, per-app caps from
//                    the caller's database), without one object per value.
//
// Example:
//
//   auto governor = sluice::Governor::Create(sluice::LoadPolicyFile("").value()).value();
//   sluice::Attribute attributes[] = {{"tenant", tenant}, {"model", model}, {"ip", ip}};
//   sluice::Admission admission = governor->Admit({.attributes = attributes, .body = body});
//   if (!admission.allowed()) return TooManyRequests(admission.Headers());
//   if (auto hit = admission.CachedAnswer()) return Replay(*hit);
//   ... call the model (admission.BeginCall() for fallback), read its usage ...
//   admission.Settle(usage);
//
// docs/governor.md has the whole call path, the metrics and the reload rules.
//
// Thread-safety: a Governor is safe for concurrent use by any number of threads; Admit holds
// one mutex only to copy the running snapshot's pointer (a Reload swaps it under the same
// mutex), then decides with the objects' own lock-free or sharded paths. An Admission is a value
// owned by one thread at a time; it keeps the policy it was admitted under alive, so it may
// outlive a Reload and the Governor itself.

#ifndef SLUICE_GOVERNOR_H_
#define SLUICE_GOVERNOR_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "sluice/cache_key.h"
#include "sluice/clock.h"
#include "sluice/concurrency_limiter.h"
#include "sluice/decision.h"
#include "sluice/fallback_policy.h"
#include "sluice/policy.h"
#include "sluice/response_cache.h"
#include "sluice/token_budget.h"
#include "sluice/usage.h"

namespace sluice {
inline namespace v1 {

namespace internal {
struct GovernorSnapshot;
struct HeldRule;
}  // namespace internal

// One request attribute (see sluice/policy.h for the names). Views: valid for the Admit call.
struct Attribute {
  std::string_view name;
  std::string_view value;
};

// What Admit looks at.
struct GovernorRequest {
  // The request's attributes; a name given twice: the first wins.
  absl::Span<const Attribute> attributes;
  // The OpenAI-style request body, or empty. The cache key and the token estimate read it.
  std::string_view body;
  // Tokens to reserve against token windows. Negative (the default): estimated from `body`
  // (EstimatePromptTokens plus its max_tokens / max_completion_tokens, sluice/usage.h).
  int64_t token_estimate = -1;
};

class Admission;

// sluice::Governor
class Governor {
 public:
  // Builds every object the policy names. Errors: InvalidArgument naming the source, the rule's
  // line and name and the field ("policy.yaml:12: rules[2] (tenant-rpm): max_keys ..."), a host
  // region's errors, a store's. `clock` must outlive the Governor; default Clock::Steady().
  static absl::StatusOr<std::unique_ptr<Governor>> Create(Policy policy,
                                                          const Clock* clock = Clock::Steady());

  Governor(const Governor&) = delete;
  Governor& operator=(const Governor&) = delete;
  ~Governor();

  // Decides `request` against every rule that matches (see the file comment). Never throws and
  // never fails: an error (a Redis configuration error, a full key table) refuses the request
  // and is in the Admission's status(). In process and host scope it never waits; in cluster
  // scope it waits for Redis (at most the store's timeouts; see waits_for_redis()).
  // Thread-safe.
  Admission Admit(const GovernorRequest& request);

  // Replaces the policy (see the file comment). On error the running policy is untouched.
  // Thread-safe; Admits in flight finish under the policy they started with.
  absl::Status Reload(Policy policy);

  // Sets the limits of one key value of rule `rule` (replacing what the policy's key_limits
  // give it), or clears them back to the policy's. What `limits` leaves unset (no windows, a
  // zero concurrency) keeps the rule's; what it sets follows the rule's shape (the same windows
  // in number and kind; in host scope a concurrency cap at most the rule's; shaping is per rule,
  // not per key). Kept across Reload while the rule keeps its state. This
  // process only: call it in every process (or put the value in the policy's key_limits).
  // Errors: NotFound naming the rule; InvalidArgument naming the field. Thread-safe.
  absl::Status SetKeyLimits(std::string_view rule, std::string_view key, const RuleLimits& limits);
  absl::Status ClearKeyLimits(std::string_view rule, std::string_view key);

  // The running policy.
  std::shared_ptr<const Policy> policy() const;
  // Whether any rule is in cluster scope, so Admit may wait for Redis (event-loop callers then
  // run it off their loop).
  bool waits_for_redis() const;
  // Prometheus text exposition of every object the Governor owns (see docs/policy.md,
  // "Metrics").
  std::string MetricsText() const;

 private:
  explicit Governor(const Clock* clock);
  // Admit without its metrics.
  Admission Decide(const GovernorRequest& request);
  struct State;
  std::unique_ptr<State> state_;
};

// sluice::Admission
class Admission {
 public:
  Admission();  // an empty admission: refused, holding nothing
  Admission(Admission&&) noexcept;
  Admission& operator=(Admission&&) noexcept;
  Admission(const Admission&) = delete;
  Admission& operator=(const Admission&) = delete;
  ~Admission();

  // Whether the request may go (after delay()).
  bool allowed() const { return allowed_; }
  explicit operator bool() const { return allowed_; }
  // The binding decision: the refusing rule's, or when allowed the matched rule with the least
  // left. A request no rule matched is allowed with an empty decision.
  const Decision& decision() const { return decision_; }
  // The binding rule's name (empty if none matched).
  std::string_view rule() const { return rule_; }
  // Why the request was refused when no limit refused it (a Redis configuration error, a full
  // key table); OK otherwise.
  const absl::Status& status() const { return status_; }
  // Shaping: wait this long before sending (0 when no shaping rule matched).
  absl::Duration delay() const { return absl::Nanoseconds(decision_delay_nanos_); }
  // Rules that matched the request, in policy order (the views live as long as the Admission).
  const std::vector<std::string_view>& matched_rules() const { return matched_; }
  // The binding decision as HTTP headers (sluice/decision.h), the policy named after the rule.
  std::vector<std::pair<std::string, std::string>> Headers(unsigned styles = kAllHeaders) const;

  // The cached answer of this request, or null (no cache, a model the cache skips, no body, a
  // body that is not JSON, or a miss). In process only (a Redis tier is read by Fetch-style
  // callers through the ResponseCache itself).
  std::shared_ptr<const CachedResponse> CachedAnswer();
  // Stores the answer under this request's key (false when not stored; see ResponseCache::Put).
  bool StoreAnswer(CachedResponse response);

  // The fallback call for the request's model (the chain whose models name it, else the chain
  // without models). NotFound when the policy has no chain for it.
  absl::StatusOr<FallbackPolicy::Call> BeginCall(const FallbackPolicy::CallOptions& options = {});

  // Settles the token reservations with what the call used (usage.total_tokens; a key whose
  // call used more than reserved goes into debt) and releases the concurrency permits. Only the
  // first Settle counts; errors come from the budgets (every budget is settled regardless).
  absl::Status Settle(const Usage& usage);
  absl::Status Settle(int64_t total_tokens);
  // The call never reached a provider: gives the token reservations back whole and releases
  // the permits (the request itself stays counted: it was admitted).
  void Cancel();
  // Releases every permit; unsettled reservations stay charged as estimated (a call whose
  // usage is unknown is assumed to have used its estimate). The destructor does the same.
  // Idempotent.
  void Release();

  // Tokens reserved for this request (0 when no token rule matched).
  int64_t token_estimate() const { return token_estimate_; }

 private:
  friend class Governor;
  const CacheKey* CacheKeyOf();
  std::shared_ptr<const internal::GovernorSnapshot> snapshot_;
  std::vector<internal::HeldRule> held_;
  bool allowed_ = false;
  Decision decision_;
  int64_t decision_delay_nanos_ = 0;
  std::string_view rule_;  // views into the snapshot's policy
  absl::Status status_;
  std::vector<std::string_view> matched_;
  std::string model_;
  std::string cache_namespace_;
  std::string body_;
  std::optional<CacheKey> cache_key_;  // made on first use: lookups and stores share it
  bool cacheable_ = false;
  bool settled_ = false;
  int64_t token_estimate_ = 0;
};

}  // namespace v1
}  // namespace sluice

#endif  // SLUICE_GOVERNOR_H_
