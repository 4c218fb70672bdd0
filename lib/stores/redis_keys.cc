#include "stores/redis_keys.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "sluice/redis_store.h"

namespace sluice {
inline namespace v1 {
namespace internal {

std::string WithScriptNow(absl::string_view body) {
  return absl::StrCat(R"lua(
local function sluice_now(arg)
  if arg ~= nil and arg ~= '' then return tonumber(arg) end
  local t = redis.call('TIME')
  return (tonumber(t[1]) - )lua",
                      kRedisEpochUnixSeconds, R"lua() * 1000000 + tonumber(t[2])
end
)lua",
                      body);
}

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
  if (cluster.local_share < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat(object, ": cluster.local_share must be >= 0, got ", cluster.local_share));
  }
  if (cluster.on_failure == FailureMode::kLocal && cluster.local_share < 1) {
    return absl::InvalidArgumentError(absl::StrCat(
        object, ": cluster.local_share must be set (>= 1: how many processes share the rule) ",
        "when cluster.on_failure is kLocal; each process then admits limit / local_share while ",
        "Redis is down (with 1, every process would admit the whole limit)"));
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
