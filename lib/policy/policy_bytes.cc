// Byte sizes of policy files: 268435456, "256MiB", "512MB" (policy_units.h).
#include <cstdint>
#include "absl/strings/string_view.h"

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "policy/policy_units.h"

namespace sluice {
inline namespace v1 {
namespace internal {

absl::StatusOr<int64_t> ParseByteSize(absl::string_view text) {
  struct Unit {
    absl::string_view name;
    int64_t bytes;
  };
  static constexpr Unit kUnits[] = {
      {"KiB", int64_t{1} << 10}, {"MiB", int64_t{1} << 20}, {"GiB", int64_t{1} << 30},
      {"TiB", int64_t{1} << 40}, {"KB", 1000},              {"MB", 1000 * 1000},
      {"GB", 1000 * 1000 * 1000}, {"TB", int64_t{1000} * 1000 * 1000 * 1000}, {"B", 1}};
  absl::string_view number = absl::StripAsciiWhitespace(text);
  int64_t scale = 1;
  for (const Unit& unit : kUnits) {
    if (number.size() > unit.name.size() &&
        number.substr(number.size() - unit.name.size()) == unit.name) {
      number = absl::StripTrailingAsciiWhitespace(number.substr(0, number.size() - unit.name.size()));
      scale = unit.bytes;
      break;
    }
  }
  int64_t value = 0;
  if (number.empty() || number.front() == '-' || number.front() == '+' ||
      !ParseWholeNumber(number, &value)) {
    return absl::InvalidArgumentError(
        absl::StrCat("must be a size like 268435456, 256MiB or 1GB, got \"",
                     absl::CHexEscape(text.substr(0, 40)), "\""));
  }
  int64_t bytes = 0;
  if (__builtin_mul_overflow(value, scale, &bytes)) {
    return absl::OutOfRangeError(absl::StrCat("is too large, got \"", text.substr(0, 40), "\""));
  }
  return bytes;
}

}  // namespace internal
}  // namespace v1
}  // namespace sluice
