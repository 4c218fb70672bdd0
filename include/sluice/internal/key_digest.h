// Internal: the identity of a key inside sluice's tables. Not part of the stable API.
#ifndef SLUICE_INTERNAL_KEY_DIGEST_H_
#define SLUICE_INTERNAL_KEY_DIGEST_H_

#include <cstdint>
#include <string_view>

namespace sluice {
inline namespace v1 {
namespace internal {

// The 128-bit XXH3 digest of a key. Tables store digests, not key strings: a fixed 16 bytes per
// key whatever the key's length, and a collision between two live keys needs ~2^64 keys.
// `hi` is never 0 (0 marks an empty table slot).
struct KeyDigest {
  uint64_t hi = 0;
  uint64_t lo = 0;
  friend bool operator==(const KeyDigest&, const KeyDigest&) = default;
};

KeyDigest DigestKey(std::string_view key) noexcept;

}  // namespace internal
}  // namespace v1
}  // namespace sluice

#endif  // SLUICE_INTERNAL_KEY_DIGEST_H_
