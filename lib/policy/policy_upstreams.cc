// The `upstreams` section: one Balancer per group, over its endpoints (docs/policy.md,
// "Upstreams"). The ranges are Balancer::Options's (sluice/balancer.h).
#include <algorithm>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "policy/policy_sections.h"
#include "sluice/balancer.h"

namespace sluice {
inline namespace v1 {
namespace internal {
namespace {

constexpr absl::Duration kLongest = absl::Hours(24 * 366);
constexpr size_t kMaxPrefixIndexEndpoints = 64;  // Balancer::AddEndpoint's limit

void ReadOutlier(const Fields& parent, Balancer::OutlierDetection* outlier) {
  Fields fields(parent.errors(), *parent.Get("outlier"), parent.PathOf("outlier"),
                {"consecutive_failures", "base_ejection_time", "max_ejection_time",
                 "max_ejection_percent"});
  if (!fields.ok()) return;
  fields.Int("consecutive_failures", 0, INT64_MAX, &outlier->consecutive_failures);
  fields.Duration("base_ejection_time", absl::Nanoseconds(1), kLongest,
                  &outlier->base_ejection_time);
  fields.Duration("max_ejection_time", absl::Nanoseconds(1), kLongest, &outlier->max_ejection_time);
  fields.Double("max_ejection_percent", 0, 100, &outlier->max_ejection_percent);
  if (outlier->max_ejection_time < outlier->base_ejection_time) {
    fields.Error("max_ejection_time", "must be >= base_ejection_time");
  }
}

void ReadWeights(const Fields& parent, Balancer::ScoreWeights* weights) {
  Fields fields(parent.errors(), *parent.Get("weights"), parent.PathOf("weights"),
                {"prefix", "queue", "kv_cache", "in_flight"});
  if (!fields.ok()) return;
  constexpr double kMax = 1e6;
  fields.Double("prefix", 0, kMax, &weights->prefix);
  fields.Double("queue", 0, kMax, &weights->queue);
  fields.Double("kv_cache", 0, kMax, &weights->kv_cache);
  fields.Double("in_flight", 0, kMax, &weights->in_flight);
  if (weights->prefix == 0 && weights->queue == 0 && weights->kv_cache == 0 &&
      weights->in_flight == 0) {
    parent.Error("weights", "must not all be 0");
  }
}

void ReadEndpoints(const Fields& parent, std::vector<EndpointSpec>* out) {
  PolicyErrors& errors = parent.errors();
  const std::string list_path = parent.PathOf("endpoints");
  if (!parent.Require("endpoints")) return;
  const YAML::Node& list = *parent.Get("endpoints");
  if (!ExpectList(errors, list, list_path)) return;
  if (list.size() == 0) {
    parent.Error("endpoints", "must list at least one endpoint");
    return;
  }
  size_t i = 0;
  for (auto it = list.begin(); it != list.end(); ++it, ++i) {
    Fields fields(errors, *it, ItemPath(list_path, i),
                  {"id", "weight", "max_concurrency", "kv_capacity_blocks", "labels"});
    if (!fields.ok()) continue;
    EndpointSpec endpoint;
    if (fields.Require("id") && fields.String("id", &endpoint.id)) {
      if (endpoint.id.empty()) {
        fields.Error("id", "must not be empty");
      } else if (std::any_of(out->begin(), out->end(),
                             [&](const EndpointSpec& e) { return e.id == endpoint.id; })) {
        fields.Error("id", absl::StrCat("\"", endpoint.id, "\" is used twice in the upstream"));
      }
    }
    fields.Int("weight", 1, INT64_MAX, &endpoint.weight);
    fields.Int("max_concurrency", 0, INT64_MAX, &endpoint.max_concurrency);
    fields.Int("kv_capacity_blocks", 0, INT64_MAX, &endpoint.kv_capacity_blocks);
    if (const YAML::Node* labels = fields.Get("labels")) {
      const std::string labels_path = fields.PathOf("labels");
      if (!labels->IsMap()) {
        fields.Error("labels", absl::StrCat("must be a mapping of names to values, got ",
                                            Describe(*labels)));
      } else {
        for (auto label = labels->begin(); label != labels->end(); ++label) {
          std::string name;
          std::string value;
          if (!ReadString(errors, label->first, labels_path, &name)) continue;
          if (!ReadString(errors, label->second, FieldPath(labels_path, name), &value)) continue;
          if (!endpoint.labels.emplace(name, value).second) {
            errors.Add(LineOf(label->first), FieldPath(labels_path, name), "is set twice");
          }
        }
      }
    }
    out->push_back(std::move(endpoint));
  }
}

}  // namespace

void ReadUpstreams(PolicyErrors& errors, const YAML::Node& node, Policy* policy) {
  if (!ExpectList(errors, node, "upstreams")) return;
  std::vector<std::string> names;
  size_t i = 0;
  for (auto it = node.begin(); it != node.end(); ++it, ++i) {
    Fields fields(errors, *it, ItemPath("upstreams", i),
                  {"name", "strategy", "endpoints", "shared_region", "shared_max_in_flight",
                   "shared_lease", "failures_before_cooldown", "cooldown_rate_limited",
                   "cooldown_auth", "cooldown_connection", "cooldown_timeout", "cooldown_server",
                   "seed", "kv_capacity_blocks", "imbalance_abs", "imbalance_rel",
                   "hot_spot_sigmas", "metrics_max_age", "score_load_slack",
                   "kv_session_half_life", "kv_full_usage", "load_bound", "virtual_nodes",
                   "ewma_weight", "outlier", "weights", "store", "redis_name",
                   "redis_refresh", "min_shared_affinity_blocks"});
    if (!fields.ok()) continue;
    UpstreamSpec upstream;
    upstream.line = fields.line();
    ReadPolicyName(fields, "name", &names, &upstream.name);
    Balancer::Options& o = upstream.balancer;
    size_t strategy = 0;
    if (fields.Choice("strategy",
                      {"round_robin", "weighted_round_robin", "least_request", "prefix_affinity",
                       "scored", "consistent_hash"},
                      &strategy) &&
        fields.Has("strategy")) {
      o.strategy = static_cast<Balancer::Strategy>(strategy);
    }
    if (fields.String("shared_region", &o.shared_region) && fields.Has("shared_region") &&
        !IsPolicyName(o.shared_region, 200)) {
      fields.Error("shared_region", "must be 1 to 200 characters of [A-Za-z0-9._-]");
    }
    fields.Int("shared_max_in_flight", 1, 4096, &o.shared_max_in_flight);
    if (fields.String("store", &upstream.store) && fields.Has("store") &&
        std::none_of(policy->stores.begin(), policy->stores.end(),
                     [&](const StoreSpec& s) { return s.name == upstream.store; })) {
      fields.Error("store",
                   absl::StrCat("names no store: \"", upstream.store, "\" is not in stores"));
    }
    if (fields.String("redis_name", &o.redis_name) && fields.Has("redis_name") &&
        !IsPolicyName(o.redis_name)) {
      fields.Error("redis_name", "must be 1 to 100 characters of [A-Za-z0-9._-]");
    }
    if ((fields.Has("redis_name") || fields.Has("redis_refresh")) && !fields.Has("store")) {
      fields.Error(fields.Has("redis_name") ? "redis_name" : "redis_refresh",
                   "applies only with store (the shared cooldowns)");
    }
    fields.Duration("redis_refresh", absl::Milliseconds(1), absl::Minutes(1), &o.redis_refresh);
    fields.Duration("shared_lease", absl::Nanoseconds(1), kLongest, &o.shared_lease);
    fields.Int("failures_before_cooldown", 1, INT64_MAX, &o.failures_before_cooldown);
    fields.Duration("cooldown_rate_limited", absl::ZeroDuration(), kLongest,
                    &o.cooldown_rate_limited);
    fields.Duration("cooldown_auth", absl::ZeroDuration(), kLongest, &o.cooldown_auth);
    fields.Duration("cooldown_connection", absl::ZeroDuration(), kLongest, &o.cooldown_connection);
    fields.Duration("cooldown_timeout", absl::ZeroDuration(), kLongest, &o.cooldown_timeout);
    fields.Duration("cooldown_server", absl::ZeroDuration(), kLongest, &o.cooldown_server);
    int64_t seed = 0;
    if (fields.Int("seed", 0, INT64_MAX, &seed)) o.seed = static_cast<uint64_t>(seed);
    fields.Int("kv_capacity_blocks", 1, INT64_MAX, &o.kv_capacity_blocks);
    fields.Int("imbalance_abs", 0, INT64_MAX, &o.imbalance_abs);
    fields.Int("min_shared_affinity_blocks", 1, INT64_MAX, &o.min_shared_affinity_blocks);
    fields.Double("imbalance_rel", 1, 1e9, &o.imbalance_rel);
    fields.Double("hot_spot_sigmas", 0, 1e9, &o.hot_spot_sigmas);
    fields.Duration("metrics_max_age", absl::Nanoseconds(1), kLongest, &o.metrics_max_age);
    if (fields.Double("score_load_slack", 0, 1e9, &o.score_load_slack) && o.score_load_slack == 0) {
      fields.Error("score_load_slack", "must be > 0, got 0");
    }
    fields.Duration("kv_session_half_life", absl::Nanoseconds(1), kLongest, &o.kv_session_half_life);
    if (fields.Double("kv_full_usage", 0, 1, &o.kv_full_usage) && o.kv_full_usage == 0) {
      fields.Error("kv_full_usage", "must be in (0, 1], got 0");
    }
    fields.Double("load_bound", 1, 1e9, &o.load_bound);
    fields.Int("virtual_nodes", 1, 1 << 16, &o.virtual_nodes);
    if (fields.Double("ewma_weight", 0, 1, &o.ewma_weight) && o.ewma_weight == 0) {
      fields.Error("ewma_weight", "must be in (0, 1], got 0");
    }
    if (fields.Has("outlier")) ReadOutlier(fields, &o.outlier);
    if (fields.Has("weights")) ReadWeights(fields, &o.weights);
    ReadEndpoints(fields, &upstream.endpoints);
    const bool prefix_index = o.strategy == Balancer::Strategy::kPrefixAffinity ||
                              o.strategy == Balancer::Strategy::kScored;
    if (prefix_index && upstream.endpoints.size() > kMaxPrefixIndexEndpoints) {
      fields.Error("endpoints", absl::StrCat("must list at most ", kMaxPrefixIndexEndpoints,
                                             " endpoints with strategy prefix_affinity or scored "
                                             "(the prefix index keeps one bit each), got ",
                                             upstream.endpoints.size()));
    }
    policy->upstreams.push_back(std::move(upstream));
  }
}

}  // namespace internal
}  // namespace v1
}  // namespace sluice
