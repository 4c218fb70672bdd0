#include "sluice/decision.h"

#include <map>

#include <catch2/catch.hpp>

namespace {
std::map<std::string, std::string> AsMap(const sluice::Decision& d, unsigned styles,
                                         std::string_view name = "sluice") {
  std::map<std::string, std::string> m;
  for (auto& [k, v] : sluice::RateLimitHeaders(d, styles, name)) m[k] = v;
  return m;
}
}  // namespace

TEST_CASE("an allowed decision renders IETF and X- headers, no Retry-After") {
  sluice::Decision d;
  d.allowed = true;
  d.limit = 100;
  d.remaining = 42;
  d.reset_after_nanos = 16'000'000'001;  // 16 s and a nanosecond: rounds up to 17
  d.window_nanos = 60'000'000'000;
  auto h = AsMap(d, sluice::kAllHeaders, "tenant");
  CHECK(h["RateLimit-Policy"] == "\"tenant\";q=100;w=60");
  CHECK(h["RateLimit"] == "\"tenant\";r=42;t=17");
  CHECK(h["X-RateLimit-Limit"] == "100");
  CHECK(h["X-RateLimit-Remaining"] == "42");
  CHECK(h["X-RateLimit-Reset"] == "17");
  CHECK(h.count("Retry-After") == 0);
}

TEST_CASE("a refusal carries Retry-After rounded up and at least 1") {
  sluice::Decision d;
  d.allowed = false;
  d.limit = 10;
  d.retry_after_nanos = 1'500'000'000;
  CHECK(AsMap(d, sluice::kRetryAfterHeader)["Retry-After"] == "2");
  d.retry_after_nanos = 1;
  CHECK(AsMap(d, sluice::kRetryAfterHeader)["Retry-After"] == "1");
  d.retry_after_nanos = 0;  // even a zero wait must not invite an immediate storm
  CHECK(AsMap(d, sluice::kRetryAfterHeader)["Retry-After"] == "1");
}

TEST_CASE("styles select header families and negative balances render as 0") {
  sluice::Decision d;
  d.allowed = false;
  d.remaining = -500;  // a token budget in debt
  d.limit = 1000;
  auto h = AsMap(d, sluice::kXRateLimitHeaders);
  CHECK(h.size() == 3);
  CHECK(h["X-RateLimit-Remaining"] == "0");
  // No window: no RateLimit-Policy, but RateLimit is still there.
  auto ietf = AsMap(d, sluice::kIetfHeaders);
  CHECK(ietf.count("RateLimit-Policy") == 0);
  CHECK(ietf.count("RateLimit") == 1);
}

TEST_CASE("policy names are sanitised into a valid sf-string") {
  sluice::Decision d;
  d.window_nanos = 1'000'000'000;
  d.limit = 1;
  auto h = AsMap(d, sluice::kIetfHeaders, "a\"b\\c\nd");
  CHECK(h["RateLimit-Policy"] == "\"abcd\";q=1;w=1");
}

TEST_CASE("CeilSeconds rounds up and clamps negatives") {
  CHECK(sluice::CeilSeconds(0) == 0);
  CHECK(sluice::CeilSeconds(-5) == 0);
  CHECK(sluice::CeilSeconds(1) == 1);
  CHECK(sluice::CeilSeconds(1'000'000'000) == 1);
  CHECK(sluice::CeilSeconds(1'000'000'001) == 2);
}
