// Internal: the readers of a policy's sections (sluice/policy.h). Each reads one YAML node into
// the Policy, reporting every problem into `errors`; sections that refer to others (a rule's
// store, a fallback target's upstream, the cache's store) are read after them (policy_parse.cc).
#ifndef SLUICE_LIB_POLICY_POLICY_SECTIONS_H_
#define SLUICE_LIB_POLICY_POLICY_SECTIONS_H_

#include <optional>
#include <string>
#include "absl/strings/string_view.h"
#include <vector>

#include "policy/policy_reader.h"
#include "sluice/policy.h"
#include "yaml-cpp/yaml.h"

namespace sluice {
inline namespace v1 {
namespace internal {

// 1 to `max_size` characters of [A-Za-z0-9._-]: rule, store, upstream, fallback and policy
// names (100), shared region names (200).
bool IsPolicyName(absl::string_view name, size_t max_size = 100);
// Reads a name field that must be IsPolicyName and unique among `taken` (which it joins).
bool ReadPolicyName(const Fields& fields, absl::string_view field, std::vector<std::string>* taken,
                    std::string* out);

// An attribute name as rules use it: non-empty; "header.<name>" with the name lower-cased.
bool NormalizeAttribute(PolicyErrors& errors, int line, const std::string& path,
                        absl::string_view name, std::string* out);
// "10.0.0.0/8", "2001:db8::/32" or a single address; empty on success, else the problem.
std::string CheckCidr(absl::string_view cidr);

// policy_match.cc
void ReadMatch(PolicyErrors& errors, const YAML::Node& node, const std::string& path,
               RuleMatch* out);

// policy_limits.cc: the limit fields shared by a rule and its key_limits entries
// (requests, tokens, concurrency, shaping). `request_kind`: the kind every request window
// takes; when unset (a rule without `window:`), the first window that names one decides, and
// `*request_kind` is set to the outcome. `min_concurrency`: 0 for a rule, 1 for an entry.
struct LimitsRead {
  bool requests = false;
  bool tokens = false;
  bool concurrency = false;
  bool shaping = false;
  bool ok = true;  // every field present was valid
};
LimitsRead ReadLimits(const Fields& fields, std::optional<WindowKind>* request_kind,
                      int64_t min_concurrency, RuleLimits* limits);

// The section readers.
void ReadStores(PolicyErrors& errors, const YAML::Node& node, Policy* policy);
void ReadUpstreams(PolicyErrors& errors, const YAML::Node& node, Policy* policy);
void ReadRules(PolicyErrors& errors, const YAML::Node& node, Policy* policy);
void ReadFallbacks(PolicyErrors& errors, const YAML::Node& node, Policy* policy);
void ReadCache(PolicyErrors& errors, const YAML::Node& node, Policy* policy);
void ReadMetrics(PolicyErrors& errors, const YAML::Node& node, Policy* policy);

}  // namespace internal
}  // namespace v1
}  // namespace sluice

#endif  // SLUICE_LIB_POLICY_POLICY_SECTIONS_H_
