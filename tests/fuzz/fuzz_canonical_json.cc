// Fuzz target: the RFC 8785 canonicaliser on arbitrary bytes (see fuzz_llm_request.cc for how it
// runs). Whatever it accepts, its output must be a fixed point: canonical JSON canonicalises to
// itself, and the cache key of an object body must agree with it.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "sluice/cache_key.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  absl::StatusOr<std::string> canonical = sluice::CanonicalizeJson(text);
  if (!canonical.ok()) {
    if (canonical.status().message().empty()) std::abort();
    return 0;
  }
  absl::StatusOr<std::string> again = sluice::CanonicalizeJson(*canonical);
  if (!again.ok() || *again != *canonical) std::abort();
  absl::StatusOr<sluice::CacheKey> key = sluice::MakeCacheKey(text, "ns", {.excluded_fields = {}});
  if (key.ok() && key->canonical != "ns\x1F" + *canonical) std::abort();
  return 0;
}
