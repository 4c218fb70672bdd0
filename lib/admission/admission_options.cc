#include "admission/admission_options.h"

#include "absl/strings/str_cat.h"
#include "stores/redis_keys.h"

namespace sluice {
inline namespace v1 {
namespace internal {

absl::StatusOr<std::vector<GcraWindow>> CompileWindows(absl::string_view object,
                                                       const std::vector<Window>& windows,
                                                       int64_t max_keys) {
  if (windows.empty() || windows.size() > kMaxGcraWindows) {
    return absl::InvalidArgumentError(absl::StrCat(object, ": windows must hold 1 to ",
                                                   kMaxGcraWindows,
                                                   " windows, got ", windows.size()));
  }
  std::vector<GcraWindow> compiled;
  for (size_t i = 0; i < windows.size(); ++i) {
    absl::StatusOr<GcraWindow> w =
        CompileWindow(windows[i], absl::StrCat(object, ": windows[", i, "]."));
    if (!w.ok()) return w.status();
    compiled.push_back(*w);
  }
  if (max_keys < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat(object, ": max_keys must be >= 1, got ", max_keys));
  }
  return compiled;
}

absl::Status CheckCost(absl::string_view object, absl::string_view what, int64_t cost,
                       bool allow_zero, const std::vector<GcraWindow>& windows) {
  if (cost < (allow_zero ? 0 : 1)) {
    return absl::InvalidArgumentError(absl::StrCat(object, ": ", what, " must be >= ",
                                                   allow_zero ? 0 : 1, ", got ", cost));
  }
  for (size_t i = 0; i < windows.size(); ++i) {
    if (cost > windows[i].burst) {
      return absl::InvalidArgumentError(absl::StrCat(
          object, ": ", what, " ", cost, " exceeds windows[", i, "].burst ", windows[i].burst,
          ", so it could never be allowed"));
    }
  }
  return absl::OkStatus();
}

absl::Status CheckClusterOptions(absl::string_view object, const ClusterOptions& cluster) {
  if (!IsRedisName(cluster.redis_name)) {
    return absl::InvalidArgumentError(
        absl::StrCat(object, ": cluster.redis_name must be 1 to 100 characters of [A-Za-z0-9._-], ",
                     "got \"", cluster.redis_name, "\""));
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

absl::StatusOr<const KeyWindows*> CheckKeyLimits(absl::string_view object,
                                                 const std::shared_ptr<const KeyWindows>& limits,
                                                 uint64_t owner_id) {
  if (limits == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat(
        object, ": limits is empty (default-constructed): obtain it from CompileKeyLimits"));
  }
  if (limits->owner != owner_id) {
    return absl::InvalidArgumentError(absl::StrCat(
        object, ": limits were compiled by another object: a KeyLimits is only valid for the ",
        "object whose CompileKeyLimits made it (its windows are compiled for that object's state)"));
  }
  return limits.get();
}

}  // namespace internal
}  // namespace v1
}  // namespace sluice
