#include "sluice/decision.h"

#include <algorithm>

#include "absl/strings/str_cat.h"

namespace sluice {
inline namespace v1 {

int64_t CeilSeconds(int64_t nanos) {
  if (nanos <= 0) return 0;
  return (nanos + 999'999'999) / 1'000'000'000;
}

namespace {

// A structured-field sf-string may hold printable ASCII; quote and backslash would need escapes,
// which no sane policy name needs, so they are dropped with everything unprintable.
std::string SfString(std::string_view name) {
  std::string out = "\"";
  for (char c : name) {
    if (c >= 0x20 && c < 0x7f && c != '"' && c != '\\') out.push_back(c);
  }
  out.push_back('"');
  return out;
}

}  // namespace

std::vector<std::pair<std::string, std::string>> RateLimitHeaders(const Decision& decision,
                                                                 unsigned styles,
                                                                 std::string_view policy_name) {
  std::vector<std::pair<std::string, std::string>> headers;
  const int64_t remaining = std::max<int64_t>(0, decision.remaining);
  const int64_t reset_seconds = CeilSeconds(decision.reset_after_nanos);
  if (styles & kIetfHeaders) {
    const std::string name = SfString(policy_name);
    if (decision.window_nanos > 0) {
      headers.emplace_back("RateLimit-Policy",
                           absl::StrCat(name, ";q=", decision.limit,
                                        ";w=", CeilSeconds(decision.window_nanos)));
    }
    headers.emplace_back("RateLimit",
                         absl::StrCat(name, ";r=", remaining, ";t=", reset_seconds));
  }
  if (styles & kXRateLimitHeaders) {
    headers.emplace_back("X-RateLimit-Limit", absl::StrCat(decision.limit));
    headers.emplace_back("X-RateLimit-Remaining", absl::StrCat(remaining));
    headers.emplace_back("X-RateLimit-Reset", absl::StrCat(reset_seconds));
  }
  if ((styles & kRetryAfterHeader) && !decision.allowed) {
    // Retry-After must be at least 1 for a refusal: "0" would invite an immediate retry storm.
    headers.emplace_back("Retry-After",
                         absl::StrCat(std::max<int64_t>(1, CeilSeconds(decision.retry_after_nanos))));
  }
  return headers;
}

}  // namespace v1
}  // namespace sluice
