#include "governor/governor_snapshot.h"

#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "governor/spec_identity.h"

namespace sluice {
inline namespace v1 {
namespace internal {
namespace {

// "policy.yaml:12: rules[2] (tenant-rpm)": where an error in one section entry comes from.
std::string Where(const Policy& policy, int line, absl::string_view section, size_t index,
                  absl::string_view name) {
  std::string out = policy.source;
  if (line > 0) absl::StrAppend(&out, ":", line);
  absl::StrAppend(&out, ": ", section, "[", index, "]");
  if (!name.empty()) absl::StrAppend(&out, " (", name, ")");
  return out;
}

absl::Status Prefixed(const absl::Status& status, absl::string_view where) {
  return absl::Status(status.code(), absl::StrCat(where, ": ", status.message()));
}

// Names are unique per section; a second one would silently shadow the first.
template <typename Spec>
absl::Status CheckUnique(const Policy& policy, const std::vector<Spec>& specs,
                         absl::string_view section) {
  absl::flat_hash_set<std::string> seen;
  for (size_t i = 0; i < specs.size(); ++i) {
    if (specs[i].name.empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat(Where(policy, specs[i].line, section, i, ""), ".name must not be empty"));
    }
    if (!seen.insert(specs[i].name).second) {
      return absl::InvalidArgumentError(absl::StrCat(
          Where(policy, specs[i].line, section, i, specs[i].name), ".name is used twice"));
    }
  }
  return absl::OkStatus();
}

absl::Status BuildStores(const Policy& policy, const GovernorSnapshot* previous,
                         GovernorSnapshot* out) {
  for (size_t i = 0; i < policy.stores.size(); ++i) {
    const StoreSpec& spec = policy.stores[i];
    SharedStore shared{StoreIdentity(spec), nullptr};
    if (previous != nullptr) {
      auto it = previous->stores.find(spec.name);
      if (it != previous->stores.end() && it->second.identity == shared.identity) {
        shared.store = it->second.store;
      }
    }
    if (!shared.store) {
      absl::StatusOr<std::shared_ptr<RedisStore>> store = RedisStore::Create(spec.redis);
      if (!store.ok()) {
        return Prefixed(store.status(), Where(policy, spec.line, "stores", i, spec.name));
      }
      shared.store = *std::move(store);
    }
    out->stores[spec.name] = std::move(shared);
  }
  return absl::OkStatus();
}

absl::Status BuildRules(const Policy& policy, const GovernorSnapshot* previous,
                        const Clock* clock, GovernorSnapshot* out) {
  absl::flat_hash_map<std::string, std::shared_ptr<RuleState>> kept;
  if (previous != nullptr) {
    for (const CompiledRule& rule : previous->rules) {
      kept[RuleIdentity(rule.state->spec(), previous->policy->name)] = rule.state;
    }
  }
  absl::flat_hash_map<std::string, std::shared_ptr<RedisStore>> stores;
  for (const auto& [name, shared] : out->stores) stores[name] = shared.store;
  for (size_t i = 0; i < policy.rules.size(); ++i) {
    const RuleSpec& spec = policy.rules[i];
    std::string where = Where(policy, spec.line, "rules", i, spec.name);
    CompiledRule rule;
    absl::StatusOr<CompiledMatch> match = CompiledMatch::Compile(spec.match, "match");
    if (!match.ok()) return Prefixed(match.status(), where);
    rule.match = *std::move(match);
    auto it = kept.find(RuleIdentity(spec, policy.name));
    // A store that was rebuilt (its options changed) takes the rule's state with it.
    bool store_kept = spec.scope != RuleScope::kCluster ||
                      (previous != nullptr && previous->stores.contains(spec.store) &&
                       out->stores.at(spec.store).store ==
                           previous->stores.at(spec.store).store);
    if (it != kept.end() && store_kept) {
      rule.state = it->second;
    } else {
      absl::StatusOr<std::shared_ptr<RuleState>> state =
          RuleState::Create(spec, policy.name, stores, "", clock, out->metrics);
      if (!state.ok()) return Prefixed(state.status(), where);
      rule.state = *std::move(state);
    }
    for (size_t k = 0; k < spec.key_limits.size(); ++k) {
      const KeyLimitsEntry& entry = spec.key_limits[k];
      std::string entry_where =
          Where(policy, entry.line > 0 ? entry.line : spec.line, "rules", i, spec.name);
      absl::StatusOr<KeyOverride> limits =
          rule.state->CompileOverride(entry.limits, absl::StrCat("key_limits[", k, "]"));
      if (!limits.ok()) return Prefixed(limits.status(), entry_where);
      CompiledRule::KeyEntry compiled;
      compiled.prefix = absl::EndsWith(entry.key, "*");
      compiled.key = compiled.prefix ? entry.key.substr(0, entry.key.size() - 1) : entry.key;
      compiled.limits = std::make_shared<const KeyOverride>(*std::move(limits));
      rule.key_limits.push_back(std::move(compiled));
    }
    if (spec.scope == RuleScope::kCluster) out->waits_for_redis = true;
    out->rules.push_back(std::move(rule));
  }
  return absl::OkStatus();
}

// The store a section names (`name` empty: none), and its identity for the section's: the
// store's own plus the object it is, so a section follows a store that was made anew.
absl::Status StoreOf(const GovernorSnapshot& snapshot, const std::string& name,
                     const std::string& where, std::shared_ptr<RedisStore>* store,
                     std::string* identity) {
  if (name.empty()) return absl::OkStatus();
  auto it = snapshot.stores.find(name);
  if (it == snapshot.stores.end()) {
    return absl::InvalidArgumentError(absl::StrCat(where, ".store names no store: \"", name, "\""));
  }
  *store = it->second.store;
  *identity = absl::StrCat(it->second.identity, ";",
                           reinterpret_cast<uintptr_t>(it->second.store.get()));
  return absl::OkStatus();
}

absl::Status BuildUpstreams(const Policy& policy, const GovernorSnapshot* previous,
                            const Clock* clock, GovernorSnapshot* out) {
  for (size_t i = 0; i < policy.upstreams.size(); ++i) {
    const UpstreamSpec& spec = policy.upstreams[i];
    std::string where = Where(policy, spec.line, "upstreams", i, spec.name);
    if (spec.endpoints.empty()) {
      return absl::InvalidArgumentError(absl::StrCat(where, ".endpoints must not be empty"));
    }
    Balancer::Options options = spec.balancer;
    std::string store_identity;
    if (absl::Status s = StoreOf(*out, spec.store, where, &options.redis, &store_identity);
        !s.ok()) {
      return s;
    }
    if (options.redis != nullptr && options.redis_name.empty()) options.redis_name = spec.name;
    SharedUpstream shared{absl::StrCat(UpstreamIdentity(spec), "|", store_identity), nullptr};
    if (previous != nullptr) {
      auto it = previous->upstreams.find(spec.name);
      if (it != previous->upstreams.end() && it->second.identity == shared.identity) {
        shared.balancer = it->second.balancer;
      }
    }
    if (!shared.balancer) {
      absl::StatusOr<std::unique_ptr<Balancer>> balancer = Balancer::Create(options, clock);
      if (!balancer.ok()) return Prefixed(balancer.status(), where);
      shared.balancer = *std::move(balancer);
      for (size_t e = 0; e < spec.endpoints.size(); ++e) {
        absl::Status added = shared.balancer->AddEndpoint(spec.endpoints[e]);
        if (!added.ok()) return Prefixed(added, absl::StrCat(where, ".endpoints[", e, "]"));
      }
    } else {
      // A kept balancer keeps its endpoints' state: update them in place. A failure here would
      // leave the running balancer half-updated, so everything is checked by a dry run first.
      Balancer::Options dry_options = options;
      dry_options.redis = nullptr;  // a dry run needs no Redis (and must not read it)
      dry_options.redis_name.clear();
      absl::StatusOr<std::unique_ptr<Balancer>> dry = Balancer::Create(dry_options, clock);
      if (!dry.ok()) return Prefixed(dry.status(), where);
      for (size_t e = 0; e < spec.endpoints.size(); ++e) {
        absl::Status added = (*dry)->AddEndpoint(spec.endpoints[e]);
        if (!added.ok()) return Prefixed(added, absl::StrCat(where, ".endpoints[", e, "]"));
      }
    }
    out->upstreams[spec.name] = std::move(shared);
  }
  return absl::OkStatus();
}

// Endpoints of kept balancers follow the new policy; done only once the whole snapshot is built.
void SyncKeptEndpoints(const Policy& policy, const GovernorSnapshot* previous,
                       const GovernorSnapshot& next) {
  if (previous == nullptr) return;
  for (const UpstreamSpec& spec : policy.upstreams) {
    auto old = previous->upstreams.find(spec.name);
    const SharedUpstream& now = next.upstreams.at(spec.name);
    if (old == previous->upstreams.end() || old->second.balancer != now.balancer) continue;
    absl::flat_hash_set<std::string> wanted;
    for (const EndpointSpec& endpoint : spec.endpoints) {
      wanted.insert(endpoint.id);
      if (!now.balancer->UpdateEndpoint(endpoint).ok()) (void)now.balancer->AddEndpoint(endpoint);
    }
    for (const EndpointStats& stats : now.balancer->Endpoints()) {
      if (!wanted.contains(stats.id)) (void)now.balancer->RemoveEndpoint(stats.id);
    }
  }
}

absl::Status BuildFallbacks(const Policy& policy, const GovernorSnapshot* previous,
                            const Clock* clock, GovernorSnapshot* out) {
  bool has_default = false;
  absl::flat_hash_set<std::string> claimed_models;
  for (size_t i = 0; i < policy.fallbacks.size(); ++i) {
    const FallbackSpec& spec = policy.fallbacks[i];
    std::string where = Where(policy, spec.line, "fallbacks", i, spec.name);
    if (spec.models.empty()) {
      if (has_default) {
        return absl::InvalidArgumentError(
            absl::StrCat(where, ".models: only one chain may leave models empty"));
      }
      has_default = true;
    }
    for (const std::string& model : spec.models) {
      if (!claimed_models.insert(model).second) {
        return absl::InvalidArgumentError(
            absl::StrCat(where, ".models: \"", model, "\" belongs to an earlier chain"));
      }
    }
    std::string upstream_identities;
    FallbackPolicy::Options options = spec.options;
    options.targets.clear();
    for (size_t t = 0; t < spec.targets.size(); ++t) {
      const FallbackSpec::Target& target = spec.targets[t];
      FallbackPolicy::Target built;
      built.name = target.name;
      built.model = target.model;
      if (!target.upstream.empty()) {
        auto it = out->upstreams.find(target.upstream);
        if (it == out->upstreams.end()) {
          return absl::InvalidArgumentError(absl::StrCat(
              where, ".targets[", t, "].upstream names no upstream: \"", target.upstream, "\""));
        }
        built.balancer = it->second.balancer;
        absl::StrAppend(&upstream_identities, it->second.identity, ";",
                        reinterpret_cast<uintptr_t>(it->second.balancer.get()), ";");
      }
      options.targets.push_back(std::move(built));
    }
    SharedFallback shared{spec.name, FallbackIdentity(spec, upstream_identities), nullptr, {}};
    shared.models.insert(spec.models.begin(), spec.models.end());
    if (previous != nullptr) {
      for (const SharedFallback& old : previous->fallbacks) {
        if (old.identity == shared.identity) shared.policy = old.policy;
      }
    }
    if (!shared.policy) {
      if (out->metrics != nullptr) {
        GovernorMetrics* metrics = out->metrics;
        std::string chain = spec.name;
        options.on_breaker_transition = [metrics, chain](std::string_view target,
                                                         const CircuitBreaker::Transition& t) {
          const char* to = t.to == CircuitBreaker::State::kOpen       ? "open"
                           : t.to == CircuitBreaker::State::kHalfOpen ? "half_open"
                                                                      : "closed";
          metrics->BreakerTransitions(chain, target, to).Add();
        };
      }
      absl::StatusOr<std::unique_ptr<FallbackPolicy>> made =
          FallbackPolicy::Create(std::move(options), clock);
      if (!made.ok()) return Prefixed(made.status(), where);
      shared.policy = *std::move(made);
    }
    out->fallbacks.push_back(std::move(shared));
  }
  return absl::OkStatus();
}

absl::Status BuildCache(const Policy& policy, const GovernorSnapshot* previous,
                        const Clock* clock, GovernorSnapshot* out) {
  if (!policy.cache) return absl::OkStatus();
  const CacheSpec& spec = *policy.cache;
  std::string where = policy.source;
  if (spec.line > 0) absl::StrAppend(&where, ":", spec.line);
  absl::StrAppend(&where, ": cache");
  bool has_tenant = false;
  for (const std::string& attribute : spec.namespace_attributes) {
    has_tenant = has_tenant || attribute == "tenant";
  }
  if (!has_tenant && !spec.share_across_tenants) {
    return absl::InvalidArgumentError(absl::StrCat(
        where, ".namespace must include \"tenant\" (or set share_across_tenants: true to serve "
               "one tenant's answers to another)"));
  }
  ResponseCache::Options options = spec.options;
  std::string store_identity;
  if (absl::Status s = StoreOf(*out, spec.store, where, &options.redis, &store_identity);
      !s.ok()) {
    return s;
  }
  out->cache.identity = CacheIdentity(spec, store_identity);
  if (previous != nullptr && previous->cache.cache &&
      previous->cache.identity == out->cache.identity) {
    out->cache.cache = previous->cache.cache;
  } else {
    absl::StatusOr<std::unique_ptr<ResponseCache>> made = ResponseCache::Create(options, clock);
    if (!made.ok()) return Prefixed(made.status(), where);
    out->cache.cache = *std::move(made);
  }
  out->cache_models.insert(spec.models.begin(), spec.models.end());
  return absl::OkStatus();
}

}  // namespace

const KeyOverride* CompiledRule::PolicyLimitsFor(std::string_view key) const {
  for (const KeyEntry& entry : key_limits) {
    if (entry.prefix ? absl::StartsWith(AbslView(key), entry.key) : key == entry.key) {
      return entry.limits.get();
    }
  }
  return nullptr;
}

const SharedFallback* GovernorSnapshot::FallbackFor(std::string_view model) const {
  const SharedFallback* fallback_default = nullptr;
  for (const SharedFallback& chain : fallbacks) {
    if (chain.models.empty()) {
      fallback_default = &chain;
    } else if (chain.models.contains(AbslView(model))) {
      return &chain;
    }
  }
  return fallback_default;
}

absl::StatusOr<std::shared_ptr<const GovernorSnapshot>> BuildSnapshot(
    Policy policy, const GovernorSnapshot* previous, const Clock* clock,
    GovernorMetrics* metrics) {
  if (clock == nullptr) return absl::InvalidArgumentError("clock must not be null");
  if (absl::Status s = CheckUnique(policy, policy.rules, "rules"); !s.ok()) return s;
  if (absl::Status s = CheckUnique(policy, policy.stores, "stores"); !s.ok()) return s;
  if (absl::Status s = CheckUnique(policy, policy.upstreams, "upstreams"); !s.ok()) return s;
  if (absl::Status s = CheckUnique(policy, policy.fallbacks, "fallbacks"); !s.ok()) return s;
  auto snapshot = std::make_shared<GovernorSnapshot>();
  snapshot->clock = clock;
  snapshot->metrics = metrics;
  if (absl::Status s = BuildStores(policy, previous, snapshot.get()); !s.ok()) return s;
  if (absl::Status s = BuildRules(policy, previous, clock, snapshot.get()); !s.ok()) return s;
  if (absl::Status s = BuildUpstreams(policy, previous, clock, snapshot.get()); !s.ok()) return s;
  if (absl::Status s = BuildFallbacks(policy, previous, clock, snapshot.get()); !s.ok()) return s;
  if (absl::Status s = BuildCache(policy, previous, clock, snapshot.get()); !s.ok()) return s;
  SyncKeptEndpoints(policy, previous, *snapshot);
  snapshot->policy = std::make_shared<const Policy>(std::move(policy));
  return std::shared_ptr<const GovernorSnapshot>(std::move(snapshot));
}

}  // namespace internal
}  // namespace v1
}  // namespace sluice
