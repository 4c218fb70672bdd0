// Fuzz target: the SSE replay converters on arbitrary bytes (see fuzz_llm_request.cc for how it
// runs). Whatever a completion converts to must convert back; nothing may crash.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <vector>

#include "sluice/sse_replay.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  absl::StatusOr<std::vector<std::string>> events = sluice::CompletionToSse(text);
  if (events.ok() && !sluice::SseToCompletion(*events).ok()) std::abort();
  // The same bytes as a stream of events, split at blank lines.
  std::vector<std::string> chunks;
  size_t at = 0;
  while (at < text.size()) {
    size_t end = text.find("\n\n", at);
    if (end == std::string::npos) end = text.size();
    chunks.push_back(text.substr(at, end - at));
    at = end + 2;
  }
  (void)sluice::SseToCompletion(chunks);
  return 0;
}
