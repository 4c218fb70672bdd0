#include "sluice/internal/key_digest.h"

// xxHash stays private to lib/: inlined here, never visible to a consumer of sluice's headers.
#define XXH_INLINE_ALL
#include <xxhash.h>

namespace sluice {
inline namespace v1 {
namespace internal {

KeyDigest DigestKey(std::string_view key) noexcept {
  const XXH128_hash_t h = XXH3_128bits(key.data(), key.size());
  KeyDigest d{h.high64, h.low64};
  if (d.hi == 0) d.hi = 1;  // 0 marks an empty slot
  return d;
}

}  // namespace internal
}  // namespace v1
}  // namespace sluice
