// Fuzz target: the RFC 8785 canonicaliser and the cache key on arbitrary bytes (see
// fuzz_llm_request.cc for how it runs). Invariants:
//   * canonical output is a fixed point: it canonicalises to itself;
//   * the cache key of an object body (no exclusions) is the namespace + the canonical form;
//   * it accepts whatever simdjson accepts (but duplicate member names), and accepts more only
//     where simdjson stops at a number (integer literals past 64 bits, which it reads itself);
//   * its output is JSON simdjson reads, but for such integers.
#include <simdjson.h>

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "fuzz_support.h"
#include "sluice/cache_key.h"

namespace {

simdjson::error_code DomError(std::string_view json) {
  static simdjson::dom::parser parser;
  const std::string copy(json);  // simdjson wants a non-null pointer even for no bytes
  return parser.parse(copy).error();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text = sluice_fuzz::View(data, size);
  absl::StatusOr<std::string> canonical = sluice::CanonicalizeJson(text);
  const simdjson::error_code dom = DomError(text);
  if (!canonical.ok()) {
    FUZZ_CHECK(!canonical.status().message().empty());
    // simdjson reads duplicate member names; JCS refuses them.
    FUZZ_CHECK(dom != simdjson::SUCCESS ||
               canonical.status().message().find("duplicate member name") != std::string_view::npos);
    return 0;
  }
  FUZZ_CHECK(dom == simdjson::SUCCESS || dom == simdjson::NUMBER_ERROR);
  const simdjson::error_code again_dom = DomError(*canonical);
  FUZZ_CHECK(again_dom == simdjson::SUCCESS || again_dom == simdjson::NUMBER_ERROR);
  absl::StatusOr<std::string> again = sluice::CanonicalizeJson(*canonical);
  FUZZ_CHECK(again.ok());
  FUZZ_CHECK(*again == *canonical);
  absl::StatusOr<sluice::CacheKey> key = sluice::MakeCacheKey(text, "ns", {.excluded_fields = {}});
  FUZZ_CHECK(key.ok() == (!canonical->empty() && canonical->front() == '{'));
  if (key.ok()) FUZZ_CHECK(key->canonical == "ns\x1F" + *canonical);
  // With the default exclusions the key is still a fixed point of its own canonical part.
  absl::StatusOr<sluice::CacheKey> excluded = sluice::MakeCacheKey(text);
  if (excluded.ok()) {
    const std::string body = excluded->canonical.substr(1);  // after the empty namespace's 0x1F
    absl::StatusOr<std::string> body_again = sluice::CanonicalizeJson(body);
    FUZZ_CHECK(body_again.ok() && *body_again == body);
  }
  return 0;
}
