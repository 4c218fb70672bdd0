// -----------------------------------------------------------------------------
// File: sluice/policy.h
// -----------------------------------------------------------------------------
//
// `Policy` is one declarative description of everything a `Governor` (sluice/governor.h) runs:
// the rules that admit or refuse requests, the Redis stores they share state through, the
// upstream groups (a Balancer each), the fallback chains over them, and the response cache.
// Operators write it as a YAML file (JSON is accepted: it is YAML); docs/policy.md is the
// schema, with an example per feature, and examples/policy.yaml exercises every feature.
//
//   version: 1
//   rules:
//     - name: tenant-rpm                 # every rule that matches applies
//       match: {model: [gpt-4o, gpt-4o-mini]}
//       key: [tenant]                    # one limit per tenant
//       requests: [{limit: 600, per: 1m}]
//       tokens: [{limit: 200000, per: 1m}]
//       key_limits:                      # per-key limits, first match wins
//         - {key: "tenant-gold", requests: [{limit: 6000, per: 1m}]}
//
// Parsing checks the document's shape and every value a field can be checked alone (types,
// ranges, durations, references between sections); each error names the source, its line and
// the field's path: "policy.yaml:14: rules[1].requests[0].limit must be > 0, got 0". What needs
// the objects themselves (a host region's size, a Redis name clash) is checked by
// Governor::Create, which names the rule.
//
// Example:
//
//   absl::StatusOr<sluice::Policy> policy = sluice::LoadPolicyFile("");   // $SLUICE_CONFIG
//   if (!policy.ok()) { LOG(ERROR) << policy.status(); return; }         // every error, named
//   auto governor = sluice::Governor::Create(*std::move(policy));
//
// Thread-safety: `Policy` is a plain value; the functions below are safe from any thread.

#ifndef SLUICE_POLICY_H_
#define SLUICE_POLICY_H_

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "sluice/balancer.h"
#include "sluice/cache_key.h"
#include "sluice/cluster.h"
#include "sluice/fallback_policy.h"
#include "sluice/redis_store.h"
#include "sluice/response_cache.h"
#include "sluice/window.h"

namespace sluice {
inline namespace v1 {

// The request attributes sluice names (a caller may pass any other name too). A header is the
// attribute "header.<name>" with the name in lower case; the client's address is "ip".
inline constexpr std::string_view kWellKnownAttributes[] = {
    "tenant", "app", "api_key", "end_user", "model", "provider", "route", "ip"};

// One test on one request attribute. It holds when the attribute is present and its value
// passes every test that is set (an `equals` or `prefix` list passes when any entry does);
// `negate` inverts the whole result.
struct AttributeFilter {
  // The attribute's name: a well-known one, "header.<lower-case name>", or the caller's own.
  std::string attribute;
  // Exact values; empty: no constraint. "*" matches any present value.
  std::vector<std::string> equals;
  // Value prefixes; empty: no constraint.
  std::vector<std::string> prefix;
  // IP networks ("10.0.0.0/8", "2001:db8::/32", or a single address); empty: no constraint.
  // Only for the attribute "ip"; an attribute that is not an address fails the test.
  std::vector<std::string> cidr;
  // Holds when the attribute is absent (and fails when it is present) instead.
  bool absent = false;
  bool negate = false;
};

// When a rule applies: every filter of some item holds. Empty `any_of`: every request. One item
// with several filters is an AND; several items are a first-match OR (Higress's rule_items).
struct RuleMatch {
  std::vector<std::vector<AttributeFilter>> any_of;
};

// A rule's limits: any combination, at least one.
struct RuleLimits {
  // Request windows (a request costs 1): GCRA by default, WindowKind::kSliding for an exact
  // "N in any interval" (sluice/window.h). Every window of one rule has the same kind. 0 to 8.
  std::vector<Window> requests;
  // Token windows (a request reserves its estimate and settles its usage; sluice/token_budget.h).
  // GCRA only. 0 to 8.
  std::vector<Window> tokens;
  // Requests of one key in flight at once (sluice/concurrency_limiter.h). 0: no cap.
  int64_t concurrency = 0;
  // Shaping (sluice/leaky_bucket.h): requests leave at `shaping_rate` per `shaping_per`, after
  // at most `shaping_max_wait` of delay; 0: no shaping.
  int64_t shaping_rate = 0;
  absl::Duration shaping_per = absl::Seconds(1);
  int64_t shaping_burst = 1;
  absl::Duration shaping_max_wait = absl::Seconds(1);

  bool empty() const {
    return requests.empty() && tokens.empty() && concurrency == 0 && shaping_rate == 0;
  }
};

// One entry of a rule's per-key limits: the key values it covers and their limits. Each limit
// it sets replaces the rule's (an entry may set only `concurrency`, say); limits it leaves unset
// keep the rule's: ParsePolicy copies them in, so `limits` is complete. The windows it sets must
// match the rule's in number and kind, and it may replace only a limit the rule has.
struct KeyLimitsEntry {
  // The key value (attributes joined by '/', as the rule builds it), or a prefix of it when the
  // value ends in '*'.
  std::string key;
  RuleLimits limits;
  int line = 0;  // where the entry was read (0 when built in code)
};

// Where a rule keeps its state (sluice/scope.h).
enum class RuleScope { kProcess = 0, kHost = 1, kCluster = 2 };

// sluice::RuleSpec
struct RuleSpec {
  // Unique within the policy; 1 to 100 characters of [A-Za-z0-9._-]. Names its metrics, its
  // headers' policy name, its region and Redis names.
  std::string name;
  RuleMatch match;
  // The attributes whose values, joined by '/', make the key. Empty: one key for every request
  // the rule matches. A request lacking one of them is keyed by an empty value for it.
  std::vector<std::string> key;
  RuleLimits limits;
  // Per-key limits; the first entry that covers the key wins, else `limits`.
  std::vector<KeyLimitsEntry> key_limits;
  // A concurrency permit's lease (ConcurrencyLimiter::Options::lease). Default 10 minutes.
  absl::Duration lease = absl::Minutes(10);
  // Default kProcess.
  RuleScope scope = RuleScope::kProcess;
  // kHost: the region name; default "<policy name>.<rule name>" (the Governor adds a suffix
  // per object kind). kCluster: the Redis name, same default.
  std::string shared_name;
  // Keys kept at once (ScopeOptions::max_keys). Default 65,536 (a host region sized for it).
  int64_t max_keys = 65536;
  // kCluster: the store (a name from Policy::stores), the failure mode and its local share,
  // and the mode (kLeased: request windows only).
  std::string store;
  FailureMode on_failure = FailureMode::kLocal;
  int64_t local_share = 0;
  ClusterMode mode = ClusterMode::kStrict;
  int line = 0;  // where the rule was read (0 when built in code)
};

// A Redis connection rules and the cache may share.
struct StoreSpec {
  std::string name;  // unique; referenced by RuleSpec::store and CacheSpec::store
  RedisOptions redis;
  int line = 0;
};

// An upstream group: one Balancer over its endpoints.
struct UpstreamSpec {
  std::string name;  // unique
  Balancer::Options balancer;  // balancer.redis is set from `store`
  // A StoreSpec name: the balancer's cooldowns and ejections are shared through it by every
  // host (Balancer::Options::redis; redis_name defaults to the upstream's name), or empty.
  std::string store;
  std::vector<EndpointSpec> endpoints;  // at least one
  int line = 0;
};

// A fallback chain: applies to requests whose "model" attribute is in `models` (empty: every
// request without a more specific chain).
struct FallbackSpec {
  struct Target {
    std::string name;
    std::string model;     // the model this target is asked for
    std::string upstream;  // an UpstreamSpec name, or empty (no balancer)
  };
  std::string name;  // unique
  std::vector<std::string> models;
  std::vector<Target> targets;  // 1 to 64
  // Everything but the targets (FallbackPolicy::Options::targets is filled from `targets`).
  FallbackPolicy::Options options;
  int line = 0;
};

// The response cache.
struct CacheSpec {
  ResponseCache::Options options;  // options.redis is set from `store`
  std::string store;               // a StoreSpec name for the Redis tier, or empty
  // The attributes that namespace answers. Default {"tenant"}; "tenant" must be among them
  // unless `share_across_tenants` (so one tenant's answer is never served to another by
  // accident).
  std::vector<std::string> namespace_attributes = {"tenant"};
  bool share_across_tenants = false;
  CacheKeyOptions key;
  // Only requests whose model matches are cached (empty: all); requests with "stream" are
  // cached like any other (the answer is replayed as a stream).
  std::vector<std::string> models;
  int line = 0;
};

// What the metrics expose.
struct MetricsSpec {
  // Label decisions by raw key too (unbounded cardinality): only for small, known key sets.
  // Default false: labels are rule, result and endpoint names only.
  bool per_key_labels = false;
  // kHost: counters live in this shared region so any worker exposes the host's totals.
  // Default empty: counters of this process only.
  std::string shared_region;
};

// sluice::Policy
struct Policy {
  // Names the policy in errors, region names and headers. Default "sluice".
  std::string name = "sluice";
  // Where it was read from ("policy.yaml", or "<string>").
  std::string source = "<string>";
  std::vector<StoreSpec> stores;
  std::vector<RuleSpec> rules;
  std::vector<UpstreamSpec> upstreams;
  std::vector<FallbackSpec> fallbacks;
  std::optional<CacheSpec> cache;
  MetricsSpec metrics;
};

// Parses a YAML (or JSON) policy. `source` names it in errors. Errors: InvalidArgument listing
// every error found (one per line, "<source>:<line>: <field path> <problem>").
absl::StatusOr<Policy> ParsePolicy(std::string_view text, std::string_view source = "<string>");

// Reads and parses the file at `path`; an empty path reads the file named by the environment
// variable SLUICE_CONFIG (NotFound when it is unset or empty). Errors: NotFound or
// PermissionDenied naming the path, then ParsePolicy's.
absl::StatusOr<Policy> LoadPolicyFile(std::string_view path = {});

}  // namespace v1
}  // namespace sluice

#endif  // SLUICE_POLICY_H_
