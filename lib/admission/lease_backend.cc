// OpenLeaseBackend: the one place a ConcurrencyLimiter's scope is read.
#include "admission/lease_backend.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "admission/redis_leases.h"
#include "stores/lease_table.h"
#include "stores/shared_lease_table.h"

namespace sluice {
inline namespace v1 {
namespace internal {

std::unique_ptr<LeaseBackend> NewRedisLeaseBackend(const LeaseSettings& settings,
                                                   std::unique_ptr<ClusterLeases> redis,
                                                   const ClusterOptions& cluster,
                                                   int64_t max_keys);

absl::StatusOr<std::unique_ptr<LeaseBackend>> OpenLeaseBackend(absl::string_view object,
                                                               const ScopeOptions& scope,
                                                               const LeaseSettings& settings) {
  if (scope.cluster.store != nullptr) {
    if (!scope.shared_region.empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat(object, ": shared_region and cluster.store are two scopes; set one"));
    }
    absl::StatusOr<std::unique_ptr<ClusterLeases>> redis =
        ClusterLeases::Create(object, scope.cluster, settings.lease);
    if (!redis.ok()) return redis.status();
    return NewRedisLeaseBackend(settings, *std::move(redis), scope.cluster, scope.max_keys);
  }
  if (!scope.shared_region.empty()) {
    absl::StatusOr<std::unique_ptr<SharedLeaseTable>> shared =
        SharedLeaseTable::Open(scope.shared_region, settings.max_in_flight, scope.max_keys);
    if (!shared.ok()) {
      return absl::Status(shared.status().code(),
                          absl::StrCat(object, ": ", shared.status().message()));
    }
    return std::make_unique<TableLeases>(settings, *std::move(shared));
  }
  return std::make_unique<TableLeases>(settings, std::make_unique<LeaseTable>(scope.max_keys));
}

}  // namespace internal
}  // namespace v1
}  // namespace sluice
