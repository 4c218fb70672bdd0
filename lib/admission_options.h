// Internal: validation shared by the objects built on GCRA windows.
#ifndef SLUICE_LIB_ADMISSION_OPTIONS_H_
#define SLUICE_LIB_ADMISSION_OPTIONS_H_

#include <cstdint>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "gcra.h"
#include "sluice/window.h"

namespace sluice {
inline namespace v1 {
namespace internal {

// Compiles `windows` (1 to kMaxWindows of them) and checks `max_keys` >= 1. Errors name the
// field, prefixed by `object` ("sluice.RateLimiter: windows[1].limit must be > 0, got 0").
absl::StatusOr<std::vector<GcraWindow>> CompileWindows(absl::string_view object,
                                                       const std::vector<Window>& windows,
                                                       int64_t max_keys);

// InvalidArgument unless 1 <= cost (or 0 <= cost when `allow_zero`) and cost fits every window's
// burst: a cost beyond a burst could never be allowed, which is a caller's bug, not a refusal.
absl::Status CheckCost(absl::string_view object, absl::string_view what, int64_t cost,
                       bool allow_zero, const std::vector<GcraWindow>& windows);

}  // namespace internal
}  // namespace v1
}  // namespace sluice

#endif  // SLUICE_LIB_ADMISSION_OPTIONS_H_
