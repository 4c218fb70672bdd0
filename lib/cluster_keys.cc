#include "cluster_keys.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "sluice/redis_store.h"

namespace sluice {
inline namespace v1 {
namespace internal {

bool IsRedisName(std::string_view name) {
  return !name.empty() && name.size() <= 100 && std::all_of(name.begin(), name.end(), [](char c) {
           return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                  c == '.' || c == '_' || c == '-';
         });
}

absl::Status CheckClusterOptions(absl::string_view object, const ClusterOptions& cluster) {
  const std::string& rule = cluster.rule;
  if (!IsRedisName(rule)) {
    return absl::InvalidArgumentError(
        absl::StrCat(object, ": cluster.rule must be 1 to 100 characters of [A-Za-z0-9._-], got \"",
                     rule, "\""));
  }
  if (cluster.local_share < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat(object, ": cluster.local_share must be >= 1, got ", cluster.local_share));
  }
  return absl::OkStatus();
}

std::string KeyTag(const ClusterOptions& cluster, const KeyDigest& d) {
  return absl::StrFormat("%s:{%s:%016x%016x}", cluster.store->options().key_prefix, cluster.rule,
                         d.hi, d.lo);
}

absl::Duration ReplyTimeout(const ClusterOptions& cluster) {
  const RedisOptions& ro = cluster.store->options();
  return ro.command_timeout + ro.connect_timeout + absl::Milliseconds(1);
}

}  // namespace internal
}  // namespace v1
}  // namespace sluice
