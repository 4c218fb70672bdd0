// Internal: validation shared by the admission objects (windows, costs, cluster options).
#ifndef SLUICE_LIB_ADMISSION_OPTIONS_H_
#define SLUICE_LIB_ADMISSION_OPTIONS_H_

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "admission/gcra.h"
#include "admission/key_windows.h"
#include "sluice/cluster.h"
#include "sluice/window.h"

namespace sluice {
inline namespace v1 {
namespace internal {

// Compiles `windows` (1 to kMaxWindows of them) and checks `max_keys` >= 1. Errors name the
// field, prefixed by `object` ("sluice.RateLimiter: windows[1].limit must be > 0, got 0").
absl::StatusOr<std::vector<GcraWindow>> CompileWindows(absl::string_view object,
                                                       const std::vector<Window>& windows,
                                                       int64_t max_keys);

// InvalidArgument naming the field unless `cluster` (with a store) is well formed. With
// FailureMode::kLocal, local_share must be set (>= 1): the default 0 refuses, because with 1 every
// process alone would admit the whole limit while Redis is down.
absl::Status CheckClusterOptions(absl::string_view object, const ClusterOptions& cluster);

// InvalidArgument unless 1 <= cost (or 0 <= cost when `allow_zero`) and cost fits every window's
// burst: a cost beyond a burst could never be allowed, which is a caller's bug, not a refusal.
absl::Status CheckCost(absl::string_view object, absl::string_view what, int64_t cost,
                       bool allow_zero, const std::vector<GcraWindow>& windows);

// The per-key windows inside `limits` if this backend (`owner_id`) compiled them; InvalidArgument
// naming `limits` for an empty KeyLimits or another object's.
absl::StatusOr<const KeyWindows*> CheckKeyLimits(absl::string_view object,
                                                 const std::shared_ptr<const KeyWindows>& limits,
                                                 uint64_t owner_id);

}  // namespace internal
}  // namespace v1
}  // namespace sluice

#endif  // SLUICE_LIB_ADMISSION_OPTIONS_H_
