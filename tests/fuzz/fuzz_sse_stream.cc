// Fuzz target: SseToCompletion on an arbitrary event stream (see fuzz_llm_request.cc for how it
// runs). The first byte chooses where the rest is cut into chunks. Invariants:
//   * the chunking changes nothing: the stream read whole gives the same answer or error code;
//   * a completion it produces goes through CompletionToSse and back, and from then on the
//     round trip is a fixed point.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "fuzz_support.h"
#include "sluice/sse_replay.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) {
    FUZZ_CHECK(sluice::SseToCompletion({}).ok());
    return 0;
  }
  const size_t step = 1 + data[0] % 13;
  const std::string stream(reinterpret_cast<const char*>(data) + 1, size - 1);
  std::vector<std::string> chunks;
  for (size_t at = 0; at < stream.size(); at += step) chunks.push_back(stream.substr(at, step));
  absl::StatusOr<std::string> cut = sluice::SseToCompletion(chunks);
  absl::StatusOr<std::string> whole = sluice::SseToCompletion({stream});
  FUZZ_CHECK(cut.status().code() == whole.status().code());
  if (!whole.ok()) return 0;
  FUZZ_CHECK(*cut == *whole);
  absl::StatusOr<std::vector<std::string>> events = sluice::CompletionToSse(*whole);
  FUZZ_CHECK(events.ok());
  absl::StatusOr<std::string> once = sluice::SseToCompletion(*events);
  FUZZ_CHECK(once.ok());
  absl::StatusOr<std::vector<std::string>> events_again = sluice::CompletionToSse(*once);
  FUZZ_CHECK(events_again.ok());
  absl::StatusOr<std::string> twice = sluice::SseToCompletion(*events_again);
  FUZZ_CHECK(twice.ok() && *twice == *once);
  return 0;
}
