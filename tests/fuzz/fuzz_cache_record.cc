// Fuzz target: the Redis tier's record decoder (lib/cache_record.h) on arbitrary bytes: what
// comes out of Redis is untrusted. Whatever decodes must encode back to the same bytes; nothing
// may crash or read out of bounds.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "cache_record.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view bytes(reinterpret_cast<const char*>(data), size);
  auto record = sluice::internal::DecodeCacheRecord(bytes);
  if (record.ok() &&
      sluice::internal::EncodeCacheRecord(record->canonical, record->response) != bytes) {
    std::abort();
  }
  return 0;
}
