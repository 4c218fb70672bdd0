// Internal: one policy, built. A Governor reads its current snapshot atomically; an Admission
// keeps the snapshot it was admitted under alive, so objects replaced by a Reload live until
// their last permit or reservation is gone.
//
// Objects that carry state (a rule's limiters, a store, a balancer, a fallback chain, the
// cache) are shared_ptrs so that a Reload can move them into the new snapshot when their
// identity (spec_identity.h) is unchanged.
#ifndef SLUICE_LIB_GOVERNOR_GOVERNOR_SNAPSHOT_H_
#define SLUICE_LIB_GOVERNOR_GOVERNOR_SNAPSHOT_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/status/statusor.h"
#include "governor/attribute_match.h"
#include "governor/governor_metrics.h"
#include "governor/rule_state.h"
#include "sluice/balancer.h"
#include "sluice/clock.h"
#include "sluice/fallback_policy.h"
#include "sluice/policy.h"
#include "sluice/redis_store.h"
#include "sluice/response_cache.h"

namespace sluice {
inline namespace v1 {
namespace internal {

struct CompiledRule {
  std::shared_ptr<RuleState> state;  // limiters and runtime per-key limits; kept across reloads
  CompiledMatch match;
  // The policy's key_limits, compiled for `state`'s objects; first match wins.
  struct KeyEntry {
    std::string key;  // without the trailing '*' when `prefix`
    bool prefix = false;
    std::shared_ptr<const KeyOverride> limits;
  };
  std::vector<KeyEntry> key_limits;
  // The entry covering `key`, or null.
  const KeyOverride* PolicyLimitsFor(std::string_view key) const;
};

struct SharedStore {
  std::string identity;
  std::shared_ptr<RedisStore> store;
};

struct SharedUpstream {
  std::string identity;  // the balancer options; endpoints are updated in place
  std::shared_ptr<Balancer> balancer;
};

struct SharedFallback {
  std::string name;
  std::string identity;
  std::shared_ptr<FallbackPolicy> policy;
  absl::flat_hash_set<std::string> models;  // empty: the default chain
};

struct SharedCache {
  std::string identity;
  std::shared_ptr<ResponseCache> cache;
};

struct GovernorSnapshot {
  std::shared_ptr<const Policy> policy;
  std::vector<CompiledRule> rules;
  absl::flat_hash_map<std::string, SharedStore> stores;
  absl::flat_hash_map<std::string, SharedUpstream> upstreams;
  std::vector<SharedFallback> fallbacks;
  SharedCache cache;
  absl::flat_hash_set<std::string> cache_models;  // empty: every model
  bool waits_for_redis = false;
  const Clock* clock = nullptr;
  // The Governor's series (kept across reloads; may be null when metrics could not be made).
  GovernorMetrics* metrics = nullptr;

  // The chain for `model`, or null.
  const SharedFallback* FallbackFor(std::string_view model) const;
};

// Builds `policy`, reusing what `previous` (may be null) has with the same identity. Errors name
// the source, the line and the field.
absl::StatusOr<std::shared_ptr<const GovernorSnapshot>> BuildSnapshot(
    Policy policy, const GovernorSnapshot* previous, const Clock* clock,
    GovernorMetrics* metrics);

}  // namespace internal
}  // namespace v1
}  // namespace sluice

#endif  // SLUICE_LIB_GOVERNOR_GOVERNOR_SNAPSHOT_H_
