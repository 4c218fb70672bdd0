// Internal: the one parser of Redis connection URLs (sluice/redis_store.h, RedisOptionsFromUrl),
// also used by the policy's `stores[].url`, which needs to know which fields a URL named.
#ifndef SLUICE_LIB_STORES_REDIS_URL_H_
#define SLUICE_LIB_STORES_REDIS_URL_H_

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "sluice/redis_store.h"

namespace sluice {
inline namespace v1 {
namespace internal {

// Sets the fields of `*options` that `url` names, leaving the others as they are, and appends
// their names (RedisOptions' spelling: "host", "tls.ca_file", "sentinels", ...) to `*named` when
// it is not null. Checks the URL's syntax only: the caller validates the whole
// (ValidateRedisOptions). Errors as RedisOptionsFromUrl's.
absl::Status ApplyRedisUrl(absl::string_view url, RedisOptions* options,
                           std::vector<std::string>* named);

}  // namespace internal
}  // namespace v1
}  // namespace sluice

#endif  // SLUICE_LIB_STORES_REDIS_URL_H_
