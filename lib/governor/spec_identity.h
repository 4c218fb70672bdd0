// Internal: what makes two specs the "same" object for a Reload. Each function renders every
// field that shapes an object's state or behaviour into a string (line numbers and a rule's
// match excluded: a rule whose match changes keeps its counts); equal strings mean the object
// built from the old spec is reused.
#ifndef SLUICE_LIB_GOVERNOR_SPEC_IDENTITY_H_
#define SLUICE_LIB_GOVERNOR_SPEC_IDENTITY_H_

#include <string>
#include <string_view>

#include "sluice/balancer.h"
#include "sluice/circuit_breaker.h"
#include "sluice/policy.h"

namespace sluice {
inline namespace v1 {
namespace internal {

// Name, key, limits, lease, scope and its settings (not the match, not key_limits: those are
// applied to the kept state).
std::string RuleIdentity(const RuleSpec& rule, absl::string_view policy_name);
std::string StoreIdentity(const StoreSpec& store);
// The balancer's options (endpoints are updated in place on a kept balancer).
std::string UpstreamIdentity(const UpstreamSpec& upstream);
// The chain, its options, and the identities of the upstreams it names.
std::string FallbackIdentity(const FallbackSpec& fallback, absl::string_view upstream_identities);
std::string CacheIdentity(const CacheSpec& cache, absl::string_view store_identity);
std::string LimitsIdentity(const RuleLimits& limits);

}  // namespace internal
}  // namespace v1
}  // namespace sluice

#endif  // SLUICE_LIB_GOVERNOR_SPEC_IDENTITY_H_
