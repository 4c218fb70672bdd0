#include "governor/rule_state.h"

#include <type_traits>
#include <utility>

#include "absl/numeric/int128.h"
#include "absl/strings/str_cat.h"
#include "governor/attribute_match.h"
#include "governor/spec_identity.h"
#define XXH_INLINE_ALL  // as everywhere in lib/: no link-time dependency on libxxhash
#include <xxhash.h>

namespace sluice {
inline namespace v1 {
namespace internal {
namespace {

// `name` under `field` ("key_limits[0].requests"), or `name` alone at the rule's top level.
std::string Sub(absl::string_view field, absl::string_view name) {
  return field.empty() ? std::string(name) : absl::StrCat(field, ".", name);
}

// The scope options of one of the rule's objects; `kind` tells its region or Redis name apart
// from the rule's other objects ("req", "tok", "cc", "shape").
absl::StatusOr<ScopeOptions> ScopeFor(
    const RuleSpec& spec, absl::string_view policy_name, absl::string_view kind,
    const absl::flat_hash_map<std::string, std::shared_ptr<RedisStore>>& stores,
    absl::string_view field) {
  ScopeOptions scope;
  scope.max_keys = spec.max_keys;
  std::string base = spec.shared_name.empty() ? absl::StrCat(policy_name, ".", spec.name)
                                              : spec.shared_name;
  // The limits' digest in the name: a Reload that changes them starts fresh in a new region or
  // Redis name, while processes still on the old policy keep theirs (a region refuses another
  // configuration, and two configurations under one Redis name would fight over its keys).
  std::string identity = LimitsIdentity(spec.limits);
  std::string name = absl::StrCat(base, ".", kind, ".",
                                  absl::Hex(XXH3_64bits(identity.data(), identity.size()) >> 32,
                                            absl::kZeroPad8));
  switch (spec.scope) {
    case RuleScope::kProcess:
      break;
    case RuleScope::kHost:
      scope.shared_region = name;
      break;
    case RuleScope::kCluster: {
      auto it = stores.find(spec.store);
      if (it == stores.end()) {
        return absl::InvalidArgumentError(
            absl::StrCat(Sub(field, "store"), " names no store: \"", spec.store, "\""));
      }
      scope.cluster.store = it->second;
      scope.cluster.redis_name = name;
      scope.cluster.on_failure = spec.on_failure;
      scope.cluster.local_share = spec.local_share;
      scope.cluster.mode = kind == "req" ? spec.mode : ClusterMode::kStrict;
      break;
    }
  }
  return scope;
}

absl::Status Named(const absl::Status& status, absl::string_view field) {
  return absl::Status(status.code(), absl::StrCat(field, ": ", status.message()));
}

}  // namespace

bool BindsTighter(const Decision& a, const Decision& b) {
  if (a.allowed != b.allowed) return !a.allowed;
  if (!a.allowed) return a.retry_after_nanos > b.retry_after_nanos;
  if (b.limit <= 0) return a.limit > 0;
  if (a.limit <= 0) return false;
  // remaining / limit compared without division.
  return absl::int128(a.remaining) * b.limit < absl::int128(b.remaining) * a.limit;
}

absl::StatusOr<std::shared_ptr<RuleState>> RuleState::Create(
    const RuleSpec& spec, absl::string_view policy_name,
    const absl::flat_hash_map<std::string, std::shared_ptr<RedisStore>>& stores,
    absl::string_view field, const Clock* clock, GovernorMetrics* metrics) {
  std::shared_ptr<RuleState> rule(new RuleState(spec, clock));
  if (metrics != nullptr) rule->series_ = metrics->ForRule(spec.name);
  const RuleLimits& limits = spec.limits;
  if (limits.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(
        field.empty() ? "the rule" : field,
        " sets no limit: give it requests, tokens, concurrency or shaping"));
  }
  // Each limit the rule sets becomes one object in the rule's scope; `kind` tells its region
  // or Redis name apart from the others' and names it in errors.
  auto build = [&](auto* object, absl::string_view kind, absl::string_view name,
                   auto fill) -> absl::Status {
    using Object = typename std::remove_reference_t<decltype(*object)>::element_type;
    absl::StatusOr<ScopeOptions> scope = ScopeFor(spec, policy_name, kind, stores, field);
    if (!scope.ok()) return scope.status();
    typename Object::Options options;
    static_cast<ScopeOptions&>(options) = *scope;
    fill(options);
    auto made = Object::Create(options, clock);
    if (!made.ok()) return Named(made.status(), Sub(field, name));
    *object = *std::move(made);
    return absl::OkStatus();
  };
  if (limits.concurrency < 0 || limits.shaping_rate < 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        Sub(field, limits.concurrency < 0 ? "concurrency" : "shaping.rate"), " must be >= 0, got ",
        limits.concurrency < 0 ? limits.concurrency : limits.shaping_rate));
  }
  absl::Status built;
  if (built.ok() && limits.concurrency > 0) {
    built = build(&rule->concurrency_, "cc", "concurrency",
                  [&](ConcurrencyLimiter::Options& o) {
                    o.max_in_flight = limits.concurrency;
                    o.lease = spec.lease;
                  });
  }
  if (built.ok() && !limits.requests.empty()) {
    built = build(&rule->requests_, "req", "requests",
                  [&](RateLimiter::Options& o) { o.windows = limits.requests; });
  }
  if (built.ok() && !limits.tokens.empty()) {
    built = build(&rule->tokens_, "tok", "tokens",
                  [&](TokenBudget::Options& o) { o.windows = limits.tokens; });
  }
  if (built.ok() && limits.shaping_rate > 0) {
    built = build(&rule->shaping_, "shape", "shaping", [&](LeakyBucket::Options& o) {
      o.rate = limits.shaping_rate;
      o.per = limits.shaping_per;
      o.burst = limits.shaping_burst;
      o.max_wait = limits.shaping_max_wait;
    });
  }
  if (!built.ok()) return built;
  return rule;
}

absl::StatusOr<KeyOverride> RuleState::CompileOverride(const RuleLimits& given,
                                                       absl::string_view field) const {
  // What `given` leaves unset (no windows, a zero cap or rate) keeps the rule's; a limit equal to
  // the rule's is no override at all, so only what differs is compiled.
  const RuleLimits& rule = spec_.limits;
  RuleLimits limits = given;
  if (limits.requests.empty()) limits.requests = rule.requests;
  if (limits.tokens.empty()) limits.tokens = rule.tokens;
  if (limits.concurrency == 0) limits.concurrency = rule.concurrency;
  if (limits.shaping_rate == 0) {
    limits.shaping_rate = rule.shaping_rate;
    limits.shaping_per = rule.shaping_per;
    limits.shaping_burst = rule.shaping_burst;
    limits.shaping_max_wait = rule.shaping_max_wait;
  }
  KeyOverride out;
  if (LimitsIdentity({.requests = limits.requests}) != LimitsIdentity({.requests = rule.requests})) {
    if (!requests_ || limits.requests.size() != rule.requests.size()) {
      return absl::InvalidArgumentError(absl::StrCat(
          field, ".requests must have as many windows as the rule's (", rule.requests.size(),
          "), got ", limits.requests.size()));
    }
    absl::StatusOr<KeyLimits> compiled = requests_->CompileKeyLimits(limits.requests);
    if (!compiled.ok()) return Named(compiled.status(), Sub(field, "requests"));
    out.requests = *std::move(compiled);
  }
  if (LimitsIdentity({.tokens = limits.tokens}) != LimitsIdentity({.tokens = rule.tokens})) {
    if (!tokens_ || limits.tokens.size() != rule.tokens.size()) {
      return absl::InvalidArgumentError(absl::StrCat(
          field, ".tokens must have as many windows as the rule's (", rule.tokens.size(),
          "), got ", limits.tokens.size()));
    }
    absl::StatusOr<KeyLimits> compiled = tokens_->CompileKeyLimits(limits.tokens);
    if (!compiled.ok()) return Named(compiled.status(), Sub(field, "tokens"));
    out.tokens = *std::move(compiled);
  }
  if (limits.concurrency != rule.concurrency) {
    if (!concurrency_ || limits.concurrency < 1) {
      return absl::InvalidArgumentError(absl::StrCat(
          field, ".concurrency must be >= 1 on a rule with a concurrency cap, got ",
          limits.concurrency));
    }
    if (spec_.scope == RuleScope::kHost && limits.concurrency > rule.concurrency) {
      // A host region holds the rule's cap of slots per key.
      return absl::InvalidArgumentError(absl::StrCat(
          field, ".concurrency must be <= the rule's ", rule.concurrency,
          " in host scope (the region holds that many slots per key), got ",
          limits.concurrency));
    }
    out.concurrency = limits.concurrency;
  }
  if (limits.shaping_rate != rule.shaping_rate || limits.shaping_per != rule.shaping_per ||
      limits.shaping_burst != rule.shaping_burst ||
      limits.shaping_max_wait != rule.shaping_max_wait) {
    return absl::InvalidArgumentError(absl::StrCat(
        field, ".shaping cannot differ per key: give those keys a rule of their own"));
  }
  return out;
}

RuleOutcome RuleState::Take(std::string_view key, int64_t tokens,
                            const KeyOverride* policy_limits, Taken* taken) {
  RuleOutcome out;
  out.allowed = true;
  bool have_binding = false;
  auto bind = [&](const Decision& d) {
    if (!have_binding || BindsTighter(d, out.decision)) out.decision = d;
    have_binding = true;
  };
  auto refuse = [&](const Decision& d, absl::Status status) {
    GiveBack(taken);
    out.allowed = false;
    out.decision = d;
    out.decision.allowed = false;
    out.status = std::move(status);
    return out;
  };
  std::shared_ptr<const KeyOverride> runtime_limits;
  if (has_runtime_.load(std::memory_order_acquire)) {
    MutexLock lock(&mutex_);
    auto it = runtime_.find(AbslView(key));
    if (it != runtime_.end()) runtime_limits = it->second;
  }
  const KeyOverride* key_limits = runtime_limits ? runtime_limits.get() : policy_limits;
  taken->key.assign(key.data(), key.size());
  if (concurrency_) {
    taken->permit = key_limits != nullptr && key_limits->concurrency > 0
                        ? concurrency_->TryAcquire(key, key_limits->concurrency)
                        : concurrency_->TryAcquire(key);
    if (!taken->permit) return refuse(taken->permit.decision(), taken->permit.status());
    bind(taken->permit.decision());
  }
  if (requests_) {
    const KeyLimits* windows =
        key_limits != nullptr && key_limits->requests ? &*key_limits->requests : nullptr;
    absl::StatusOr<Decision> d =
        windows != nullptr ? requests_->TryAcquire(key, 1, *windows) : requests_->TryAcquire(key, 1);
    if (!d.ok()) return refuse(Decision{}, d.status());
    if (!d->allowed) return refuse(*d, absl::OkStatus());
    taken->request_charge = *d;
    // The override lives as long as this rule state or the snapshot's entry: both outlive
    // the Admission's give-back (runtime entries are kept alive below).
    taken->request_limits = windows;
    if (runtime_limits) taken->runtime_limits = runtime_limits;
    bind(*d);
  }
  if (tokens_) {
    absl::StatusOr<TokenBudget::Reservation> r =
        key_limits != nullptr && key_limits->tokens
            ? tokens_->TryReserve(key, tokens, *key_limits->tokens)
            : tokens_->TryReserve(key, tokens);
    if (!r.ok()) return refuse(Decision{}, r.status());
    if (!*r) return refuse(r->decision(), absl::OkStatus());
    bind(r->decision());
    taken->reservation = *std::move(r);
  }
  if (shaping_) {
    absl::StatusOr<Decision> d = shaping_->TryAcquire(key, 1);
    if (!d.ok()) return refuse(Decision{}, d.status());
    if (!d->allowed) return refuse(*d, absl::OkStatus());
    taken->shaping_charge = *d;
    // The shaping delay is carried separately; it never binds the headers.
    out.decision.delay_nanos = d->delay_nanos;
    if (!have_binding) {
      out.decision = *d;
      have_binding = true;
    }
  }
  return out;
}

void RuleState::GiveBack(Taken* taken) {
  // Latest first, as taken. A give-back that fails (Redis unreachable) is dropped: the
  // objects then refuse more, never admit more.
  if (taken->shaping_charge) {
    (void)shaping_->Refund(taken->key, 1, *taken->shaping_charge);
    taken->shaping_charge.reset();
  }
  if (taken->reservation) (void)taken->reservation.Cancel();
  if (taken->request_charge) {
    if (taken->request_limits != nullptr) {
      (void)requests_->Refund(taken->key, 1, *taken->request_charge, *taken->request_limits);
    } else {
      (void)requests_->Refund(taken->key, 1, *taken->request_charge);
    }
    taken->request_charge.reset();
  }
  if (taken->permit) (void)taken->permit.Release();
}

int64_t RuleState::failure_mode_decisions() const {
  int64_t total = 0;
  if (concurrency_) total += concurrency_->failure_mode_decisions();
  if (requests_) total += requests_->failure_mode_decisions();
  if (tokens_) total += tokens_->failure_mode_decisions();
  if (shaping_) total += shaping_->failure_mode_decisions();
  return total;
}

absl::Status RuleState::SetKeyLimits(std::string_view key, const RuleLimits& limits) {
  absl::StatusOr<KeyOverride> compiled = CompileOverride(limits, "limits");
  if (!compiled.ok()) return compiled.status();
  auto shared = std::make_shared<const KeyOverride>(*std::move(compiled));
  MutexLock lock(&mutex_);
  runtime_[std::string(key)] = std::move(shared);
  has_runtime_.store(true, std::memory_order_release);
  return absl::OkStatus();
}

void RuleState::ClearKeyLimits(std::string_view key) {
  MutexLock lock(&mutex_);
  runtime_.erase(AbslView(key));
}

int64_t RuleState::runtime_key_count() const {
  MutexLock lock(&mutex_);
  return static_cast<int64_t>(runtime_.size());
}

}  // namespace internal
}  // namespace v1
}  // namespace sluice
