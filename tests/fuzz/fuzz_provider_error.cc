// Fuzz target: the provider error-body classifier and the Retry-After parser on arbitrary bytes
// (see fuzz_llm_request.cc for how it runs). Both must never crash, and must only return what
// their contracts allow.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "fuzz_support.h"
#include "sluice/provider_error.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text = sluice_fuzz::View(data, size);
  const sluice::Failure stated = sluice::ClassifyProviderError(text);
  FUZZ_CHECK(stated == sluice::Failure::kNone || stated == sluice::Failure::kContextLength ||
             stated == sluice::Failure::kContentFilter || stated == sluice::Failure::kRateLimited ||
             stated == sluice::Failure::kServer);
  // A 4xx answer with this body: one of the 4xx classes, never a success.
  const sluice::Failure f = sluice::Classify({.http_status = 400, .error_body = text});
  FUZZ_CHECK(f != sluice::Failure::kNone && f != sluice::Failure::kServer);
  const std::optional<absl::Duration> retry_after =
      sluice::ParseRetryAfter(text, absl::FromUnixSeconds(1'800'000'000));
  FUZZ_CHECK(!retry_after || *retry_after >= absl::ZeroDuration());
  return 0;
}
