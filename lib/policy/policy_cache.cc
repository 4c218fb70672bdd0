// The `cache` and `metrics` sections (docs/policy.md, "Cache" and "Metrics").
#include <algorithm>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "policy/policy_sections.h"
#include "policy/policy_units.h"
#include "sluice/response_cache.h"

namespace sluice {
inline namespace v1 {
namespace internal {
namespace {

constexpr int64_t kMinCacheBytes = int64_t{64} << 10;  // ResponseCache::Options::max_bytes

void ReadMaxBytes(const Fields& fields, int64_t* out) {
  const YAML::Node* node = fields.Get("max_bytes");
  if (node == nullptr) return;
  if (!node->IsScalar()) {
    fields.Error("max_bytes", absl::StrCat("must be a size like 268435456 or 256MiB, got ",
                                           Describe(*node)));
    return;
  }
  absl::StatusOr<int64_t> bytes = ParseByteSize(node->Scalar());
  if (!bytes.ok()) {
    fields.Error("max_bytes", bytes.status().message());
  } else if (*bytes < kMinCacheBytes) {
    fields.Error("max_bytes", absl::StrCat("must be at least 64KiB, got ", *bytes));
  } else {
    *out = *bytes;
  }
}

}  // namespace

void ReadCache(PolicyErrors& errors, const YAML::Node& node, Policy* policy) {
  Fields fields(errors, node, "cache",
                {"max_bytes", "default_ttl", "shards", "store", "redis_name", "namespace",
                 "share_across_tenants", "exclude", "models", "protected_share", "admission",
                 "store_tool_calls"});
  if (!fields.ok()) return;
  CacheSpec cache;
  cache.line = fields.line();
  ResponseCache::Options& o = cache.options;
  ReadMaxBytes(fields, &o.max_bytes);
  fields.Duration("default_ttl", absl::Nanoseconds(1), absl::Hours(24 * 366), &o.default_ttl);
  if (fields.Int("shards", 1, 1024, &o.shards) && (o.shards & (o.shards - 1)) != 0) {
    fields.Error("shards", absl::StrCat("must be a power of two, got ", o.shards));
  }
  fields.Double("protected_share", 0, 1, &o.protected_share);
  if (o.protected_share >= 1) fields.Error("protected_share", "must be below 1");
  fields.Bool("admission", &o.admission);
  fields.Bool("store_tool_calls", &o.store_tool_calls);
  if (fields.String("store", &cache.store) && fields.Has("store") &&
      std::none_of(policy->stores.begin(), policy->stores.end(),
                   [&](const StoreSpec& s) { return s.name == cache.store; })) {
    fields.Error("store", absl::StrCat("names no store: \"", cache.store, "\" is not in stores"));
  }
  if (fields.String("redis_name", &o.redis_name) && fields.Has("redis_name") &&
      !IsPolicyName(o.redis_name)) {
    fields.Error("redis_name", "must be 1 to 100 characters of [A-Za-z0-9._-]");
  }
  if (fields.Has("redis_name") && !fields.Has("store")) {
    fields.Error("redis_name", "applies only with store (the Redis tier)");
  }
  fields.Bool("share_across_tenants", &cache.share_across_tenants);
  std::vector<std::string> attributes;
  if (fields.StringList("namespace", true, &attributes) && fields.Has("namespace")) {
    cache.namespace_attributes.clear();
    for (const std::string& name : attributes) {
      std::string attribute;
      if (NormalizeAttribute(errors, fields.LineOf("namespace"), fields.PathOf("namespace"), name,
                             &attribute)) {
        cache.namespace_attributes.push_back(std::move(attribute));
      }
    }
  }
  const auto& ns = cache.namespace_attributes;
  if (!cache.share_across_tenants && std::find(ns.begin(), ns.end(), "tenant") == ns.end()) {
    fields.Error("namespace", "must include tenant, so that one tenant's answer is never served "
                              "to another (or set share_across_tenants: true)");
  }
  fields.StringList("exclude", true, &cache.key.excluded_fields);
  fields.StringList("models", true, &cache.models);
  policy->cache = std::move(cache);
}

void ReadMetrics(PolicyErrors& errors, const YAML::Node& node, Policy* policy) {
  Fields fields(errors, node, "metrics", {"per_key_labels", "shared_region"});
  if (!fields.ok()) return;
  fields.Bool("per_key_labels", &policy->metrics.per_key_labels);
  if (fields.String("shared_region", &policy->metrics.shared_region) &&
      fields.Has("shared_region") && !IsPolicyName(policy->metrics.shared_region, 200)) {
    fields.Error("shared_region", "must be 1 to 200 characters of [A-Za-z0-9._-]");
  }
}

}  // namespace internal
}  // namespace v1
}  // namespace sluice
