#include "admission/failure_mode.h"

#include "sluice/redis_store.h"
#include "stores/redis_errors.h"

namespace sluice {
inline namespace v1 {
namespace internal {

FailureModePolicy::FailureModePolicy(const ClusterOptions& cluster)
    : mode_(cluster.on_failure),
      local_share_(cluster.local_share),
      retry_after_nanos_(
          absl::ToInt64Nanoseconds(cluster.store->options().reconnect_interval)) {}

FailureModePolicy::Verdict FailureModePolicy::OnFailure(const absl::Status& failure) {
  if (!IsTransportError(failure)) return Verdict::kError;  // logged and counted by the store
  decisions_.fetch_add(1, std::memory_order_relaxed);
  switch (mode_) {
    case FailureMode::kAllow:
      return Verdict::kAllow;
    case FailureMode::kDeny:
      return Verdict::kDeny;
    case FailureMode::kLocal:
      return Verdict::kLocal;
  }
  return Verdict::kDeny;
}

}  // namespace internal
}  // namespace v1
}  // namespace sluice
