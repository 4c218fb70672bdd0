// Fuzz target: the provider error-body classifier and the Retry-After parser on arbitrary bytes
// (see fuzz_llm_request.cc for how it runs). Both must never crash, and must only return what
// their contracts allow.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "sluice/failure.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  const sluice::Failure stated = sluice::ClassifyProviderError(text);
  if (stated != sluice::Failure::kNone && stated != sluice::Failure::kContextLength &&
      stated != sluice::Failure::kContentFilter && stated != sluice::Failure::kRateLimited &&
      stated != sluice::Failure::kServer) {
    std::abort();
  }
  // A 4xx answer with this body: one of the 4xx classes, never a success.
  const sluice::Failure f = sluice::Classify({.http_status = 400, .error_body = text});
  if (f == sluice::Failure::kNone || f == sluice::Failure::kServer) std::abort();
  const std::optional<absl::Duration> retry_after =
      sluice::ParseRetryAfter(text, absl::FromUnixSeconds(1'800'000'000));
  if (retry_after && *retry_after < absl::ZeroDuration()) std::abort();
  return 0;
}
