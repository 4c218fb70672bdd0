#include "stores/redis_keys.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

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

std::string KeyTag(const RedisStore& store, std::string_view redis_name, const KeyDigest& d) {
  return absl::StrFormat("%s:{%s:%016x%016x}", store.options().key_prefix, redis_name, d.hi, d.lo);
}

absl::Duration ReplyTimeout(const RedisStore& store) {
  const RedisOptions& ro = store.options();
  return ro.command_timeout + ro.connect_timeout + absl::Milliseconds(1);
}

int64_t ReadPatienceNanos(const RedisStore& store) {
  return absl::ToInt64Nanoseconds(std::max(absl::Seconds(1), 4 * ReplyTimeout(store)));
}

}  // namespace internal
}  // namespace v1
}  // namespace sluice
