// sluice/cache_key.h: a request's canonical form (formats/canonical_json.h) and its digest.
#include "sluice/cache_key.h"

#define XXH_INLINE_ALL  // header-only: xxHash never reaches consumers (see CMakeLists.txt)
#include <xxhash.h>

#include <algorithm>

#include "absl/strings/str_format.h"
#include "formats/canonical_json.h"

namespace sluice {
inline namespace v1 {

std::string CacheKey::DigestHex() const {
  return absl::StrFormat("%016x%016x", digest_hi, digest_lo);
}

absl::StatusOr<CacheKey> MakeCacheKey(std::string_view body, std::string_view name_space,
                                      const CacheKeyOptions& options) {
  CacheKey key;
  key.canonical.reserve(name_space.size() + 1 + body.size());
  key.canonical.append(name_space).push_back('\x1F');
  auto excluded = [&](std::string_view name) {
    return std::find(options.excluded_fields.begin(), options.excluded_fields.end(), name) !=
           options.excluded_fields.end();
  };
  if (absl::Status s = internal::AppendCanonicalObject(body, excluded, key.canonical); !s.ok()) {
    return s;
  }
  const XXH128_hash_t h = XXH3_128bits(key.canonical.data(), key.canonical.size());
  key.digest_hi = h.high64;
  key.digest_lo = h.low64;
  return key;
}

}  // namespace v1
}  // namespace sluice
