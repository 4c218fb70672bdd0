// -----------------------------------------------------------------------------
// File: sluice/llm_request.h
// -----------------------------------------------------------------------------
//
// What sluice reads from an OpenAI-style request body, and the prefix block hashes the Balancer
// routes by.
//
// `ParseLlmRequest` reads `/v1/chat/completions` bodies (`messages`, each `content` a string or
// an array of parts) and `/v1/completions` bodies (`prompt`, a string) with simdjson. Malformed or
// hostile input (bad JSON, wrong types, nesting past simdjson's depth limit, invalid UTF-8) gives
// an InvalidArgument status naming the field; it never crashes and never reads out of bounds. An
// empty body is an error too, also as std::string_view(nullptr, 0) (the C ABI's (NULL, 0)).
//
// `PrefixBlockHashes` cuts the conversation (every message, in order, as `role`, 0x1F,
// `content`, 0x1E) into blocks of `block_chars` bytes and chains XXH3-64 hashes over them,
// seeded by the model: block i's hash covers blocks 0..i, so two requests share block i's hash
// only if their first i+1 blocks are equal (the chained-block scheme of the Gateway API Inference
// Extension and AIBrix; see docs/balancer.md).
//
// Example:
//
//   absl::StatusOr<sluice::LlmRequest> request = sluice::ParseLlmRequest(body);
//   if (!request.ok()) return BadRequest(request.status().message());
//   std::vector<uint64_t> blocks = sluice::PrefixBlockHashes(*request);
//
// Thread-safety: free functions without shared state; safe from any thread.

#ifndef SLUICE_LLM_REQUEST_H_
#define SLUICE_LLM_REQUEST_H_

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"

namespace sluice {
inline namespace v1 {

// One message of a chat request. Text parts of a parts array are joined in order; a non-text
// part (an image, an audio clip) appears as its minified JSON, so it still shapes the prefix.
struct ChatMessage {
  std::string role;
  std::string content;
};

// The fields of a request body that routing needs.
struct LlmRequest {
  std::string model;
  // Chat requests: the messages in order. Completion requests: one message with role "prompt".
  std::vector<ChatMessage> messages;
  bool stream = false;
  // Bytes of message content (roles excluded).
  int64_t prompt_chars = 0;

  // A prompt-size estimate for load accounting: about 4 bytes of English text per token, the
  // ratio the Gateway API Inference Extension and AIBrix use without a tokenizer.
  int64_t EstimatedPromptTokens() const { return (prompt_chars + 3) / 4; }
};

// Parses an OpenAI-style request body. Precondition: none; any bytes are accepted and judged.
// Errors (InvalidArgument): not JSON, not an object, `model` missing or not a string, neither
// `messages` (an array) nor `prompt` (a string), a message that is not an object, a `role` that
// is not a string, a `content` that is neither a string, null nor an array of parts, a `stream`
// that is not a boolean. The message names the field, e.g. "messages[2].content".
absl::StatusOr<LlmRequest> ParseLlmRequest(std::string_view json_body);

struct PrefixHashOptions {
  // Bytes per block. Default 128 (about 32 tokens). Must be >= 1.
  int64_t block_chars = 128;
  // Blocks hashed at most (the rest of a longer prompt is not indexed). Default 256, which covers
  // 32 KiB, about 8k tokens. Must be >= 1.
  int64_t max_blocks = 256;
};

// The chained block hashes of `request` (see the file comment). A trailing partial block is
// hashed too. An empty conversation gives no hashes. Options out of range are clamped to 1.
std::vector<uint64_t> PrefixBlockHashes(const LlmRequest& request,
                                        const PrefixHashOptions& options = {});

}  // namespace v1
}  // namespace sluice

#endif  // SLUICE_LLM_REQUEST_H_
