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

absl::StatusOr<Decision> FailureModePolicy::Decide(
    const absl::Status& failure, int64_t limit, int64_t window_nanos,
    absl::FunctionRef<void(Decision*)> decide_locally) {
  Decision out;
  out.limit = limit;
  out.window_nanos = window_nanos;
  switch (OnFailure(failure)) {
    case Verdict::kError:
      return failure;
    case Verdict::kAllow:
      out.allowed = true;
      break;
    case Verdict::kDeny:
      out.retry_after_nanos = retry_after_nanos_;
      break;
    case Verdict::kLocal:
      decide_locally(&out);
      break;
  }
  return out;
}

Decision FailureModePolicy::OrRefusal(absl::StatusOr<Decision> d, int64_t limit,
                                      int64_t window_nanos, absl::Status* error) const {
  if (d.ok()) return *d;
  *error = d.status();
  Decision refused;
  refused.limit = limit;
  refused.window_nanos = window_nanos;
  refused.retry_after_nanos = retry_after_nanos_;
  return refused;
}

}  // namespace internal
}  // namespace v1
}  // namespace sluice
