// The `rules` section: match, key, limits, scope and per-key limits (docs/policy.md, "Rules").
#include <algorithm>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "policy/policy_sections.h"
#include "sluice/shared_region.h"

namespace sluice {
inline namespace v1 {
namespace internal {
namespace {

constexpr absl::Duration kMaxLease = absl::Hours(24 * 366);

bool ReadKey(const Fields& fields, RuleSpec* rule) {
  std::vector<std::string> names;
  if (!fields.StringList("key", true, &names)) return false;
  bool ok = true;
  const YAML::Node& node = *fields.Get("key");
  for (size_t i = 0; i < names.size(); ++i) {
    const std::string path = node.IsSequence() ? ItemPath(fields.PathOf("key"), i)
                                               : fields.PathOf("key");
    const int line = node.IsSequence() ? LineOf(node[i]) : LineOf(node);
    std::string attribute;
    if (!NormalizeAttribute(fields.errors(), line, path, names[i], &attribute)) {
      ok = false;
    } else if (std::find(rule->key.begin(), rule->key.end(), attribute) != rule->key.end()) {
      fields.errors().Add(line, path, absl::StrCat("names ", attribute, " twice"));
      ok = false;
    } else {
      rule->key.push_back(std::move(attribute));
    }
  }
  return ok;
}

// What an entry of key_limits sets replaces the rule's; what it leaves out is the rule's, so the
// entry's limits are complete (the windows it sets must match the rule's in number and kind).
void ReadKeyLimits(const Fields& rule_fields, const RuleSpec& rule, WindowKind request_kind,
                   std::vector<KeyLimits>* out) {
  PolicyErrors& errors = rule_fields.errors();
  const YAML::Node& list = *rule_fields.Get("key_limits");
  const std::string list_path = rule_fields.PathOf("key_limits");
  if (!ExpectList(errors, list, list_path)) return;
  if (rule.key.empty()) {
    rule_fields.Error("key_limits", "needs the rule's key (the rule has one key for every request)");
    return;
  }
  size_t i = 0;
  for (auto it = list.begin(); it != list.end(); ++it, ++i) {
    Fields fields(errors, *it, ItemPath(list_path, i),
                  {"key", "requests", "tokens", "concurrency", "shaping"});
    if (!fields.ok()) continue;
    KeyLimits entry;
    entry.line = fields.line();
    bool ok = fields.Require("key") && fields.String("key", &entry.key);
    if (ok && entry.key.empty()) {
      fields.Error("key", "must not be empty");
      ok = false;
    }
    for (const KeyLimits& other : *out) {
      if (ok && other.key == entry.key) {
        fields.Error("key", absl::StrCat("\"", entry.key, "\" is listed twice (line ", other.line,
                                         ")"));
        ok = false;
      }
    }
    std::optional<WindowKind> kind = request_kind;
    const LimitsRead read = ReadLimits(fields, &kind, 1, &entry.limits);
    ok = read.ok && ok;
    if (!read.requests && !read.tokens && !read.concurrency && !read.shaping) {
      errors.Add(fields.line(), fields.path(),
                 "sets no limit: set requests, tokens, concurrency or shaping");
      ok = false;
    }
    if (read.requests && entry.limits.requests.size() != rule.limits.requests.size()) {
      fields.Error("requests", absl::StrCat("must have ", rule.limits.requests.size(),
                                            " windows like the rule's requests, got ",
                                            entry.limits.requests.size()));
      ok = false;
    }
    if (read.tokens && entry.limits.tokens.size() != rule.limits.tokens.size()) {
      fields.Error("tokens", absl::StrCat("must have ", rule.limits.tokens.size(),
                                          " windows like the rule's tokens, got ",
                                          entry.limits.tokens.size()));
      ok = false;
    }
    if (read.concurrency && rule.limits.concurrency == 0) {
      fields.Error("concurrency", "replaces the rule's concurrency, and the rule sets none");
      ok = false;
    }
    if (read.shaping && rule.limits.shaping_rate == 0) {
      fields.Error("shaping", "replaces the rule's shaping, and the rule sets none");
      ok = false;
    }
    if (!read.requests) entry.limits.requests = rule.limits.requests;
    if (!read.tokens) entry.limits.tokens = rule.limits.tokens;
    if (!read.concurrency) entry.limits.concurrency = rule.limits.concurrency;
    if (!read.shaping) {
      entry.limits.shaping_rate = rule.limits.shaping_rate;
      entry.limits.shaping_per = rule.limits.shaping_per;
      entry.limits.shaping_burst = rule.limits.shaping_burst;
      entry.limits.shaping_max_wait = rule.limits.shaping_max_wait;
    }
    if (ok) out->push_back(std::move(entry));
  }
}

// scope, shared_name, max_keys and the cluster fields.
void ReadScope(const Fields& fields, const Policy& policy, RuleSpec* rule) {
  size_t scope = 0;
  const bool scope_ok = fields.Choice("scope", {"process", "host", "cluster"}, &scope);
  if (scope_ok) rule->scope = static_cast<RuleScope>(scope);
  if (fields.String("shared_name", &rule->shared_name) && fields.Has("shared_name") &&
      !IsPolicyName(rule->shared_name)) {
    fields.Error("shared_name", absl::StrCat("must be 1 to 100 characters of [A-Za-z0-9._-], got ",
                                             Describe(*fields.Get("shared_name"))));
  }
  if (scope_ok && fields.Has("shared_name") && rule->scope == RuleScope::kProcess) {
    fields.Error("shared_name", "applies only with scope: host or cluster");
  }
  fields.Int("max_keys", 1, rule->scope == RuleScope::kHost ? kMaxSharedRegionKeys : INT64_MAX,
             &rule->max_keys);
  const bool cluster = rule->scope == RuleScope::kCluster;
  if (!cluster) {
    for (const char* name : {"store", "on_failure", "local_share", "mode"}) {
      if (scope_ok && fields.Has(name)) fields.Error(name, "applies only with scope: cluster");
    }
    return;
  }
  if (fields.Require("store") && fields.String("store", &rule->store)) {
    const bool known = std::any_of(policy.stores.begin(), policy.stores.end(),
                                   [&](const StoreSpec& s) { return s.name == rule->store; });
    if (!known) {
      fields.Error("store", absl::StrCat("names no store: \"", rule->store,
                                         "\" is not in stores"));
    }
  }
  size_t on_failure = 2;
  if (fields.Choice("on_failure", {"allow", "deny", "local"}, &on_failure)) {
    rule->on_failure = static_cast<FailureMode>(on_failure);
  }
  fields.Int("local_share", 0, INT64_MAX, &rule->local_share);
  if (rule->on_failure == FailureMode::kLocal && rule->local_share == 0 &&
      !fields.Has("local_share")) {
    fields.errors().Add(fields.line(), fields.PathOf("local_share"),
                        "is required with on_failure: local (the default): how many processes "
                        "share the rule, so each admits limit / local_share while Redis is down");
  } else if (rule->on_failure == FailureMode::kLocal && rule->local_share == 0) {
    fields.Error("local_share", "must be >= 1 with on_failure: local");
  }
  size_t mode = 0;
  if (fields.Choice("mode", {"strict", "leased"}, &mode)) {
    rule->mode = mode == 1 ? ClusterMode::kLeased : ClusterMode::kStrict;
  }
  if (rule->mode == ClusterMode::kLeased && !rule->limits.requests.empty() &&
      rule->limits.requests.front().kind == WindowKind::kSliding) {
    fields.Error("mode", "leased cannot lease a sliding window (use strict)");
  }
}

}  // namespace

void ReadRules(PolicyErrors& errors, const YAML::Node& node, Policy* policy) {
  if (!ExpectList(errors, node, "rules")) return;
  std::vector<std::string> names;
  size_t i = 0;
  for (auto it = node.begin(); it != node.end(); ++it, ++i) {
    Fields fields(errors, *it, ItemPath("rules", i),
                  {"name", "match", "key", "requests", "tokens", "concurrency", "lease", "shaping",
                   "window", "scope", "shared_name", "max_keys", "store", "on_failure",
                   "local_share", "mode", "key_limits"});
    if (!fields.ok()) continue;
    RuleSpec rule;
    rule.line = fields.line();
    ReadPolicyName(fields, "name", &names, &rule.name);
    if (const YAML::Node* match = fields.Get("match")) {
      ReadMatch(errors, *match, fields.PathOf("match"), &rule.match);
    }
    if (fields.Has("key")) ReadKey(fields, &rule);
    std::optional<WindowKind> kind;
    size_t window = 0;
    if (fields.Has("window") && fields.Choice("window", {"gcra", "sliding"}, &window)) {
      kind = window == 1 ? WindowKind::kSliding : WindowKind::kGcra;
    }
    if (fields.Has("window") && !fields.Has("requests")) {
      fields.Error("window", "sets the kind of the request windows, and the rule has none");
    }
    const LimitsRead read = ReadLimits(fields, &kind, 0, &rule.limits);
    if (!read.requests && !read.tokens && !read.concurrency && !read.shaping) {
      errors.Add(fields.line(), fields.path(),
                 "has no limit: set requests, tokens, concurrency or shaping");
    }
    fields.Duration("lease", absl::Nanoseconds(1), kMaxLease, &rule.lease);
    ReadScope(fields, *policy, &rule);
    if (fields.Has("key_limits")) {
      ReadKeyLimits(fields, rule, kind.value_or(WindowKind::kGcra), &rule.key_limits);
    }
    policy->rules.push_back(std::move(rule));
  }
}

}  // namespace internal
}  // namespace v1
}  // namespace sluice
