// Internal: the checks of a RedisOptions, shared by RedisStore::Create and RedisOptionsFromUrl so
// that a URL is held to exactly what a hand-built RedisOptions is.
#ifndef SLUICE_LIB_STORES_REDIS_OPTIONS_CHECK_H_
#define SLUICE_LIB_STORES_REDIS_OPTIONS_CHECK_H_

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "sluice/redis_store.h"

namespace sluice {
inline namespace v1 {
namespace internal {

// OK, or InvalidArgument "<who>: <field> must be ..., got ..." for the first field that is wrong
// (RedisNode fields are named with their index: "cluster_nodes[2].port").
absl::Status ValidateRedisOptions(const RedisOptions& options, absl::string_view who);

}  // namespace internal
}  // namespace v1
}  // namespace sluice

#endif  // SLUICE_LIB_STORES_REDIS_OPTIONS_CHECK_H_
