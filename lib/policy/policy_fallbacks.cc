// The `fallbacks` section: chains of targets, each optionally balanced over an upstream
// (docs/policy.md, "Fallbacks"). The ranges are FallbackPolicy::Options's and
// CircuitBreaker::Options's.
#include <algorithm>
#include <string>
#include <vector>

#include <string_view>

#include "absl/strings/str_cat.h"
#include "policy/policy_sections.h"
#include "sluice/failure.h"
#include "sluice/fallback_policy.h"

namespace sluice {
inline namespace v1 {
namespace internal {
namespace {

constexpr absl::Duration kLongest = absl::Hours(24 * 366);
constexpr size_t kMaxTargets = 64;

void ReadBreaker(const Fields& parent, CircuitBreaker::Options* breaker) {
  Fields fields(parent.errors(), *parent.Get("breaker"), parent.PathOf("breaker"),
                {"consecutive_failures", "failure_ratio", "slow_call_ratio", "slow_call_duration",
                 "window", "minimum_calls", "open_time", "open_time_multiplier", "max_open_time",
                 "half_open_probes"});
  if (!fields.ok()) return;
  fields.Int("consecutive_failures", 0, INT64_MAX, &breaker->consecutive_failures);
  fields.Double("failure_ratio", 0, 1, &breaker->failure_ratio);
  fields.Double("slow_call_ratio", 0, 1, &breaker->slow_call_ratio);
  fields.Duration("slow_call_duration", absl::Nanoseconds(1), kLongest,
                  &breaker->slow_call_duration);
  fields.Duration("window", absl::Nanoseconds(1), kLongest, &breaker->window);
  fields.Int("minimum_calls", 1, INT64_MAX, &breaker->minimum_calls);
  fields.Duration("open_time", absl::Nanoseconds(1), kLongest, &breaker->open_time);
  fields.Double("open_time_multiplier", 1, 1e6, &breaker->open_time_multiplier);
  fields.Duration("max_open_time", absl::Nanoseconds(1), kLongest, &breaker->max_open_time);
  fields.Int("half_open_probes", 1, INT64_MAX, &breaker->half_open_probes);
  if (breaker->max_open_time < breaker->open_time) {
    fields.Error(fields.Has("max_open_time") ? "max_open_time" : "open_time",
                 "max_open_time must be >= open_time");
  }
}

void ReadActions(const Fields& parent, FallbackPolicy::Actions* actions) {
  Fields fields(parent.errors(), *parent.Get("actions"), parent.PathOf("actions"),
                {"connect", "timeout", "reset", "rate_limited", "server", "auth", "context_length",
                 "content_filter", "client"});
  if (!fields.ok()) return;
  for (absl::string_view name : {"connect", "timeout", "reset", "rate_limited", "server", "auth",
                                "context_length", "content_filter", "client"}) {
    size_t action = 0;
    if (fields.Has(name) && fields.Choice(name, {"retry_same", "next_target", "fatal"}, &action)) {
      actions->Set(*FailureFromName(std::string_view(name.data(), name.size())), static_cast<FallbackPolicy::Action>(action));
    }
  }
}

void ReadTargets(const Fields& parent, const Policy& policy, FallbackSpec* fallback) {
  PolicyErrors& errors = parent.errors();
  if (!parent.Require("targets")) return;
  const YAML::Node& list = *parent.Get("targets");
  const std::string list_path = parent.PathOf("targets");
  if (!ExpectList(errors, list, list_path)) return;
  if (list.size() == 0 || list.size() > kMaxTargets) {
    parent.Error("targets", absl::StrCat("must list 1 to ", kMaxTargets, " targets, got ",
                                         list.size()));
    return;
  }
  size_t i = 0;
  for (auto it = list.begin(); it != list.end(); ++it, ++i) {
    Fields fields(errors, *it, ItemPath(list_path, i), {"name", "model", "upstream"});
    if (!fields.ok()) continue;
    FallbackSpec::Target target;
    if (fields.Require("name") && fields.String("name", &target.name)) {
      if (target.name.empty()) {
        fields.Error("name", "must not be empty");
      } else if (std::any_of(fallback->targets.begin(), fallback->targets.end(),
                             [&](const auto& t) { return t.name == target.name; })) {
        fields.Error("name", absl::StrCat("\"", target.name, "\" is used twice in the chain"));
      }
    }
    fields.String("model", &target.model);
    if (fields.String("upstream", &target.upstream) && fields.Has("upstream") &&
        std::none_of(policy.upstreams.begin(), policy.upstreams.end(),
                     [&](const UpstreamSpec& u) { return u.name == target.upstream; })) {
      fields.Error("upstream", absl::StrCat("names no upstream: \"", target.upstream,
                                            "\" is not in upstreams"));
    }
    fallback->targets.push_back(std::move(target));
  }
}

}  // namespace

void ReadFallbacks(PolicyErrors& errors, const YAML::Node& node, Policy* policy) {
  if (!ExpectList(errors, node, "fallbacks")) return;
  std::vector<std::string> names;
  size_t i = 0;
  for (auto it = node.begin(); it != node.end(); ++it, ++i) {
    Fields fields(errors, *it, ItemPath("fallbacks", i),
                  {"name", "models", "targets", "deadline", "attempt_timeout",
                   "max_retries_per_target", "context_length_target", "backoff_base",
                   "backoff_max", "breaker", "retry_budget", "actions"});
    if (!fields.ok()) continue;
    FallbackSpec fallback;
    fallback.line = fields.line();
    ReadPolicyName(fields, "name", &names, &fallback.name);
    if (fields.StringList("models", true, &fallback.models)) {
      for (const std::string& model : fallback.models) {
        for (const FallbackSpec& other : policy->fallbacks) {
          if (std::find(other.models.begin(), other.models.end(), model) != other.models.end()) {
            fields.Error("models", absl::StrCat("lists \"", model, "\", which fallbacks \"",
                                                other.name, "\" lists too"));
          }
        }
      }
      if (fallback.models.empty()) {
        for (const FallbackSpec& other : policy->fallbacks) {
          if (other.models.empty()) {
            fields.errors().Add(fields.LineOf("models"), fields.PathOf("models"),
                                absl::StrCat("is empty (every model), like fallbacks \"",
                                             other.name, "\"'s: only one chain may be the "
                                             "default"));
          }
        }
      }
    }
    ReadTargets(fields, *policy, &fallback);
    FallbackPolicy::Options& o = fallback.options;
    fields.Duration("deadline", absl::Nanoseconds(1), kLongest, &o.deadline);
    fields.Duration("attempt_timeout", absl::ZeroDuration(), kLongest, &o.attempt_timeout);
    fields.Int("max_retries_per_target", 0, 100, &o.max_retries_per_target);
    fields.Duration("backoff_base", absl::Nanoseconds(1), kLongest, &o.backoff_base);
    fields.Duration("backoff_max", absl::Nanoseconds(1), kLongest, &o.backoff_max);
    if (o.backoff_max < o.backoff_base) {
      fields.Error(fields.Has("backoff_max") ? "backoff_max" : "backoff_base",
                   "backoff_base must be <= backoff_max");
    }
    if (fields.String("context_length_target", &o.context_length_target) &&
        fields.Has("context_length_target") &&
        std::none_of(fallback.targets.begin(), fallback.targets.end(),
                     [&](const auto& t) { return t.name == o.context_length_target; })) {
      fields.Error("context_length_target",
                   absl::StrCat("names no target of the chain: \"", o.context_length_target, "\""));
    }
    if (fields.Has("breaker")) ReadBreaker(fields, &o.breaker);
    if (const YAML::Node* budget = fields.Get("retry_budget")) {
      Fields b(errors, *budget, fields.PathOf("retry_budget"), {"ratio", "min_retries"});
      if (b.ok()) {
        b.Double("ratio", 0, 1e6, &o.retry_budget.ratio);
        b.Int("min_retries", 0, INT64_MAX, &o.retry_budget.min_retries);
      }
    }
    if (fields.Has("actions")) ReadActions(fields, &o.actions);
    policy->fallbacks.push_back(std::move(fallback));
  }
}

}  // namespace internal
}  // namespace v1
}  // namespace sluice
