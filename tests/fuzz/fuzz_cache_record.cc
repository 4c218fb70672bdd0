// Fuzz target: the Redis tier's record decoder (lib/cache_record.h) on arbitrary bytes: what
// comes out of Redis is untrusted. Whatever decodes must encode back to the same bytes; nothing
// may crash or read out of bounds. A decoded answer then goes where a cache hit goes: a body
// through CompletionToSse (its size linear in the body), chunks through SseToCompletion.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "cache/cache_record.h"
#include "fuzz_support.h"
#include "sluice/sse_replay.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view bytes = sluice_fuzz::View(data, size);
  auto record = sluice::internal::DecodeCacheRecord(bytes);
  if (!record.ok()) return 0;
  FUZZ_CHECK(sluice::internal::EncodeCacheRecord(record->canonical, record->response) == bytes);
  const sluice::CachedResponse& r = record->response;
  if (!r.chunks.empty()) (void)sluice::SseToCompletion(r.chunks);
  absl::StatusOr<std::vector<std::string>> events = sluice::CompletionToSse(r.body);
  if (events.ok()) {
    size_t total = 0;
    for (const std::string& e : *events) total += e.size();
    FUZZ_CHECK(total <= 10 * r.body.size() + 512);
  }
  return 0;
}
