// Internal: the units a policy file writes values in: durations ("250ms", "1.5s", "1m", "1h",
// "1d", "1h30m"), byte sizes ("256MiB") and the window shorthand ("600/1m", "600/m").
#ifndef SLUICE_LIB_POLICY_POLICY_UNITS_H_
#define SLUICE_LIB_POLICY_POLICY_UNITS_H_

#include <cstdint>
#include "absl/strings/string_view.h"

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace sluice {
inline namespace v1 {
namespace internal {

// One or more "<number><unit>" terms (units ns, us, ms, s, m, h, d; the number may have a
// fraction, "1.5s"), summed; or "0". Never negative. Errors: InvalidArgument saying what is
// expected (the caller adds the field's name), OutOfRange when the sum is beyond 100,000 days.
absl::StatusOr<absl::Duration> ParseDuration(absl::string_view text);

// A whole number of bytes, optionally with a unit: B, KB, MB, GB, TB (powers of 1000) or KiB,
// MiB, GiB, TiB (powers of 1024). Errors: InvalidArgument; OutOfRange past INT64_MAX.
absl::StatusOr<int64_t> ParseByteSize(absl::string_view text);

// "<limit>/<period>": the limit a whole number, the period a duration whose number may be left
// out ("600/m" is 600 per minute). Errors: InvalidArgument naming what is expected.
struct RateShorthand {
  int64_t limit = 0;
  absl::Duration per;
};
absl::StatusOr<RateShorthand> ParseRateShorthand(absl::string_view text);

// A whole number with optional '+' or '-' and '_' between digits ("200_000"); false when not
// one or outside int64.
bool ParseWholeNumber(absl::string_view text, int64_t* out);

}  // namespace internal
}  // namespace v1
}  // namespace sluice

#endif  // SLUICE_LIB_POLICY_POLICY_UNITS_H_
