// Internal: the bytes a ResponseCache entry is kept as in its Redis tier (sluice/response_cache.h).
//
//   "SLC1" | flags (1 byte: bit 0 streamed) | u32 canonical length | canonical
//          | u32 body length | body | u32 chunk count | (u32 length | chunk) ...
//
// Lengths are little-endian. The canonical bytes travel with the answer so that a reader can
// verify it got the answer to its own question (a digest collision, or a foreign value under the
// key, reads as a miss). Decoding checks every length against what is left: bytes from Redis are
// untrusted input (tests/fuzz/fuzz_cache_record.cc).
#ifndef SLUICE_LIB_CACHE_RECORD_H_
#define SLUICE_LIB_CACHE_RECORD_H_

#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "sluice/response_cache.h"

namespace sluice {
inline namespace v1 {
namespace internal {

std::string EncodeCacheRecord(std::string_view canonical, const CachedResponse& response);

struct DecodedCacheRecord {
  std::string canonical;
  CachedResponse response;
};
// InvalidArgument (naming what is wrong) for anything EncodeCacheRecord did not write.
absl::StatusOr<DecodedCacheRecord> DecodeCacheRecord(std::string_view bytes);

}  // namespace internal
}  // namespace v1
}  // namespace sluice

#endif  // SLUICE_LIB_CACHE_RECORD_H_
