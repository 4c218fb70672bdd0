// -----------------------------------------------------------------------------
// File: sluice/sse_replay.h
// -----------------------------------------------------------------------------
//
// Serving a cached answer in the other form than it was stored: a whole chat completion as an
// SSE stream, or a stored stream as one chat completion (OpenAI's `/v1/chat/completions`
// shapes). A stored stream replayed as a stream needs neither: its chunks are kept as they came.
//
//   CompletionToSse(body)   a `chat.completion` JSON -> the SSE events a streaming client expects:
//                           per choice, one chunk with the role and the whole content, one with
//                           the finish reason; the usage (if any) on the last; then [DONE]. Each
//                           event is "data: {...}\n\n".
//   SseToCompletion(chunks) the events of a streamed answer -> one `chat.completion` JSON: the
//                           content deltas of each choice joined, its role and finish reason,
//                           the id, model, created and usage the stream carried.
//
// Both parse with simdjson and never throw. Errors: InvalidArgument naming what is wrong;
// Unimplemented for tool-call streams (their argument deltas are not reassembled).
//
// Thread-safety: free functions without shared state.

#ifndef SLUICE_SSE_REPLAY_H_
#define SLUICE_SSE_REPLAY_H_

#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"

namespace sluice {
inline namespace v1 {

absl::StatusOr<std::vector<std::string>> CompletionToSse(std::string_view completion_json);
absl::StatusOr<std::string> SseToCompletion(const std::vector<std::string>& chunks);

}  // namespace v1
}  // namespace sluice

#endif  // SLUICE_SSE_REPLAY_H_
