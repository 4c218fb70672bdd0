// Durations and the window shorthand of policy files (policy_units.h).
#include <cstdint>
#include <string>
#include "absl/strings/string_view.h"

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "policy/policy_units.h"

namespace sluice {
inline namespace v1 {
namespace internal {
namespace {

constexpr absl::string_view kDurationForm = "a duration like 250ms, 1.5s, 1m, 1h or 1d";
// Far beyond any field's range, short of absl::Duration's: sums stay exact and finite.
constexpr absl::Duration kLongest = absl::Hours(24 * 100000);

// The unit at the front of `rest` (the longest that matches), removed from it.
bool TakeUnit(absl::string_view* rest, absl::Duration* unit) {
  struct Unit {
    absl::string_view name;
    absl::Duration value;
  };
  static constexpr Unit kUnits[] = {
      {"ns", absl::Nanoseconds(1)}, {"us", absl::Microseconds(1)}, {"ms", absl::Milliseconds(1)},
      {"s", absl::Seconds(1)},      {"m", absl::Minutes(1)},      {"h", absl::Hours(1)},
      {"d", absl::Hours(24)}};
  for (const Unit& u : kUnits) {  // two-letter units first: "ms" is not "m" then "s"
    if (rest->substr(0, u.name.size()) == u.name) {
      rest->remove_prefix(u.name.size());
      *unit = u.value;
      return true;
    }
  }
  return false;
}

size_t DigitsAt(absl::string_view text) {
  size_t n = 0;
  while (n < text.size() && absl::ascii_isdigit(static_cast<unsigned char>(text[n]))) ++n;
  return n;
}

absl::Status NotADuration(absl::string_view text) {
  return absl::InvalidArgumentError(absl::StrCat("must be ", kDurationForm, ", got \"",
                                                 absl::CHexEscape(text.substr(0, 40)), "\""));
}

absl::Status NotARate(absl::string_view text) {
  return absl::InvalidArgumentError(
      absl::StrCat("must be <limit>/<period> like 600/1m or 600/m, got \"",
                   absl::CHexEscape(text.substr(0, 40)), "\""));
}

}  // namespace

absl::StatusOr<absl::Duration> ParseDuration(absl::string_view text) {
  if (text == "0") return absl::ZeroDuration();
  if (text.empty()) return NotADuration(text);
  absl::Duration total = absl::ZeroDuration();
  absl::string_view rest = text;
  while (!rest.empty()) {
    const size_t whole_digits = DigitsAt(rest);
    absl::string_view whole = rest.substr(0, whole_digits);
    rest.remove_prefix(whole_digits);
    absl::string_view fraction;
    if (!rest.empty() && rest.front() == '.') {
      rest.remove_prefix(1);
      const size_t fraction_digits = DigitsAt(rest);
      fraction = rest.substr(0, fraction_digits);
      rest.remove_prefix(fraction_digits);
    }
    absl::Duration unit;
    if ((whole.empty() && fraction.empty()) || !TakeUnit(&rest, &unit)) return NotADuration(text);
    // Digits past the 9th of a fraction are below a nanosecond's share of a day: dropped.
    if (fraction.size() > 9) fraction = fraction.substr(0, 9);
    int64_t whole_value = 0;
    if (!whole.empty() && (whole.size() > 12 || !absl::SimpleAtoi(whole, &whole_value))) {
      return absl::OutOfRangeError(absl::StrCat("is too long, got \"", text.substr(0, 40), "\""));
    }
    total += unit * whole_value;
    if (!fraction.empty()) {
      int64_t fraction_value = 0;
      (void)absl::SimpleAtoi(fraction, &fraction_value);  // 1 to 9 digits: always fits
      int64_t scale = 1;
      for (size_t i = 0; i < fraction.size(); ++i) scale *= 10;
      total += unit * fraction_value / scale;
    }
    if (total > kLongest) {
      return absl::OutOfRangeError(absl::StrCat("is too long, got \"", text.substr(0, 40), "\""));
    }
  }
  return total;
}

bool ParseWholeNumber(absl::string_view text, int64_t* out) {
  std::string digits;
  size_t i = 0;
  if (!text.empty() && (text[0] == '+' || text[0] == '-')) digits.push_back(text[i++]);
  bool previous_digit = false;
  for (; i < text.size(); ++i) {
    const char c = text[i];
    if (absl::ascii_isdigit(static_cast<unsigned char>(c))) {
      digits.push_back(c);
      previous_digit = true;
    } else if (c == '_' && previous_digit && i + 1 < text.size()) {
      previous_digit = false;  // "1__0" and "_1" are not numbers
    } else {
      return false;
    }
  }
  if (!previous_digit) return false;
  return absl::SimpleAtoi(digits, out);
}

absl::StatusOr<RateShorthand> ParseRateShorthand(absl::string_view text) {
  const size_t slash = text.find('/');
  RateShorthand rate;
  if (slash == absl::string_view::npos || !ParseWholeNumber(text.substr(0, slash), &rate.limit)) {
    return NotARate(text);
  }
  absl::string_view per = text.substr(slash + 1);
  if (!per.empty() && !absl::ascii_isdigit(static_cast<unsigned char>(per.front())) &&
      per.front() != '.') {
    // "600/m": one of the unit.
    std::string one = absl::StrCat("1", per);
    absl::StatusOr<absl::Duration> period = ParseDuration(one);
    if (!period.ok()) return NotARate(text);
    rate.per = *period;
    return rate;
  }
  absl::StatusOr<absl::Duration> period = ParseDuration(per);
  if (!period.ok()) return NotARate(text);
  rate.per = *period;
  return rate;
}

}  // namespace internal
}  // namespace v1
}  // namespace sluice
