// -----------------------------------------------------------------------------
// File: sluice/sse_replay.h
// -----------------------------------------------------------------------------
//
// Serving a cached answer in the other form than it was stored: a whole chat completion as an
// SSE stream, or a stored stream as one chat completion (OpenAI's `/v1/chat/completions`
// shapes). A stored stream replayed as a stream needs neither: its chunks are kept as they came.
//
//   CompletionToSse(body)   a `chat.completion` JSON -> the SSE events a streaming client expects:
//                           one chunk with every choice's role and whole content, one with every
//                           choice's finish reason and the usage (if any), then [DONE]; with
//                           "choices": [] a single chunk carries the usage. Each event is
//                           "data: {...}\n\n" and repeats the completion's id, created, model and
//                           system_fingerprint (strings; created an integer; others are left out).
//                           The events together are at most 10 x the size of `body` + 512 bytes:
//                           a record read back from a shared cache is untrusted input.
//   SseToCompletion(chunks) the events of a streamed answer -> one `chat.completion` JSON: the
//                           content deltas of each choice joined, its role and finish reason,
//                           the id, model, created and usage the stream carried.
//
// `chunks` are read as one event stream, as the WHATWG EventSource spec ("Interpreting an event
// stream") reads it: lines end with CRLF, LF or CR; an event is the lines up to a blank line, and
// it may span chunks, as a chunk may hold several events; comment lines (':') and the id, retry
// and unknown fields are skipped; the values of several `data:` lines are joined with '\n'; a
// leading BOM is dropped. Events of a type other than "message", events with empty data and the
// final [DONE] are skipped, as is an event the stream ends in the middle of (no blank line after
// it).
// CompletionToSse's events read back as the completion they came from: its id, created, model,
// usage, and each choice's role, string content and finish reason (choices with distinct indices).
//
// Both parse with simdjson and never throw. Errors: InvalidArgument naming what is wrong (the
// chunk an event ends in); Unimplemented for tool-call streams (their argument deltas are not
// reassembled).
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
