// -----------------------------------------------------------------------------
// File: sluice/usage.h
// -----------------------------------------------------------------------------
//
// Usage metering: how many tokens a call used, read from the provider's answer, and how many its
// prompt will use, estimated from the request before the call. A `TokenBudget` (sluice/
// token_budget.h) reserves the estimate, then settles the usage.
//
//   UsageReader          reads an answer incrementally: `Feed` it the bytes as they arrive, in
//                        chunks cut anywhere (inside "data:", inside a JSON string, inside a
//                        multi-byte UTF-8 sequence, between the CR and LF of a line end), then
//                        `Finish` gives the usage. The answer may be an SSE stream or a plain
//                        JSON body (or Gemini's JSON array stream); the reader tells which from
//                        its first byte.
//   ReadUsage            the same for a whole answer held in memory.
//   IncludeUsageInStream asks an OpenAI-style streaming request to report its usage.
//   EstimatePromptTokens a cheap estimate of a request's prompt tokens, for TryReserve.
//
// Example (a gateway relaying a streamed answer):
//
//   std::string body = sluice::IncludeUsageInStream(request_body).value_or(request_body);
//   int64_t estimate = sluice::EstimatePromptTokens(body) + max_tokens;
//   auto reservation = budget->TryReserve(tenant, estimate).value();
//   if (!reservation) return TooManyRequests(reservation.decision().retry_after());
//   sluice::UsageReader reader(sluice::Provider::kAuto);
//   while (auto chunk = upstream.Read()) { reader.Feed(*chunk); client.Write(*chunk); }
//   absl::StatusOr<sluice::Usage> usage = reader.Finish();
//   (void)reservation.Settle(usage.ok() ? usage->total_tokens : estimate);  // NotFound: none
//
// What each provider reports, and how it becomes a `Usage` (field paths in the event's or the
// body's JSON; "->" names the Usage field):
//
//   kOpenAIChat, kOpenAICompletions   `usage` {prompt_tokens -> prompt_tokens, completion_tokens
//       -> completion_tokens, total_tokens -> total_tokens, prompt_tokens_details.cached_tokens
//       -> cached_tokens, completion_tokens_details.reasoning_tokens -> reasoning_tokens}. A body
//       has it at the top level; a stream only in its last chunk (with "choices": []), and only
//       when the request set `stream_options.include_usage` (see IncludeUsageInStream); the
//       chunks before it carry "usage": null. Also DashScope's OpenAI-compatible mode, Azure
//       OpenAI, vLLM and other OpenAI-compatible servers.
//   kOpenAIResponses   `response.usage` of the `response.completed` (or `.incomplete`,
//       `.failed`) event; a body's top-level `usage`: {input_tokens -> prompt_tokens,
//       output_tokens -> completion_tokens, total_tokens, input_tokens_details.cached_tokens ->
//       cached_tokens, output_tokens_details.reasoning_tokens -> reasoning_tokens}.
//   kAnthropic   `message_start`'s `message.usage` {input_tokens, cache_creation_input_tokens,
//       cache_read_input_tokens, output_tokens}, then `message_delta`'s `usage` whose counts are
//       cumulative (the last one is the answer's); a body's top-level `usage`. Anthropic's
//       input_tokens leaves out the cached tokens, so prompt_tokens = input_tokens +
//       cache_creation_input_tokens + cache_read_input_tokens (every prompt token, as the other
//       providers count it); cached_tokens = cache_read_input_tokens, cache_creation_tokens =
//       cache_creation_input_tokens; output_tokens -> completion_tokens. No total is reported.
//   kGemini   `usageMetadata` {promptTokenCount (cached tokens included) +
//       toolUsePromptTokenCount -> prompt_tokens, candidatesTokenCount + thoughtsTokenCount ->
//       completion_tokens, totalTokenCount -> total_tokens, cachedContentTokenCount ->
//       cached_tokens, thoughtsTokenCount -> reasoning_tokens}, in every chunk of a stream (the
//       last is the answer's): SSE with `?alt=sse`, else one JSON array of chunks. Vertex AI too.
//   kDashScope   DashScope's native API (`/api/v1/services/aigc/...`): top-level `usage`
//       {input_tokens -> prompt_tokens, output_tokens -> completion_tokens, total_tokens,
//       prompt_tokens_details.cached_tokens -> cached_tokens,
//       output_tokens_details.reasoning_tokens -> reasoning_tokens}, in every event of a stream
//       (`X-DashScope-SSE: enable`; the last is the answer's). An event or body shaped as
//       OpenAI's (`usage.prompt_tokens`) is read as kOpenAIChat reads it.
//   kAuto   the first event (or body) whose shape names a provider fixes it: "object" of
//       "chat.completion[.chunk]" (chat), "text_completion" (completions), "response" or a
//       "type" starting with "response." (responses), a "type" of message/message_start/
//       message_delta/... (Anthropic), a `usageMetadata` or `candidates` member (Gemini), an
//       `output` object (DashScope). Events before it are read with the provider it fixes.
//
// Several reports in one answer: each count reported replaces the one before (the last report
// wins; counts are never summed), which reads Anthropic's and Gemini's cumulative counts and
// OpenAI's single final chunk alike (Higress summed or lost them: see docs/usage.md).
//
// The stream: SSE as the WHATWG spec reads it (lines end with CRLF, LF or CR; an event ends at a
// blank line; several `data:` lines join with '\n'; comments and `id:`/`retry:` are skipped; a
// leading BOM is dropped), events of every type (DashScope's are "result", the Responses API's
// and Anthropic's are named after their JSON "type"); "[DONE]" and data that is not a JSON object
// are skipped. At Finish, an event the stream ends in the middle of (no blank line after it) is
// still read when its data is a whole JSON object: a server or proxy that drops the last blank
// line loses no usage, and a cut-off event fails to parse and is counted as malformed. A body
// that starts with '{' is one JSON object; with '[' a JSON array whose object elements are read
// one by one (Gemini without alt=sse); objects one after the other (NDJSON) are read too.
//
// Hostile input never fails Feed: what cannot be read is skipped and counted in `Stats`. An event
// whose data (or a JSON element) exceeds `Options::max_event_bytes` is dropped as it arrives
// (memory stays bounded) and counted as oversized; JSON that simdjson refuses (invalid UTF-8 in
// a string, a NUL, an integer beyond 64 bits, a truncation) is counted as malformed. A count must
// be a non-negative JSON number with no fraction (12 and 12.0 both read as 12); a negative, a
// fractional, a string or a boolean count is ignored (as if absent) and counted as rejected; a
// count above `Usage::kMaxTokens` saturates to it, as do the sums above.
//
// Thread-safety: a UsageReader reads one answer and is used by one thread at a time (it is not
// synchronized); distinct readers are independent. The free functions share no state and are
// safe from any thread.

#ifndef SLUICE_USAGE_H_
#define SLUICE_USAGE_H_

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"

namespace sluice {
inline namespace v1 {

// Whose answer a UsageReader reads; the mapping of each is in the banner above.
enum class Provider {
  kAuto,
  kOpenAIChat,
  kOpenAICompletions,
  kOpenAIResponses,
  kAnthropic,
  kGemini,
  kDashScope,
};

// "auto", "openai_chat", "openai_completions", "openai_responses", "anthropic", "gemini",
// "dashscope".
std::string_view ProviderName(Provider provider);

// The tokens one call used, as its provider reported them (see the banner for the mapping).
struct Usage {
  // Counts saturate here (2^62), and so do their sums: the caller may add a few without
  // overflowing int64_t.
  static constexpr int64_t kMaxTokens = int64_t{1} << 62;

  // Which counts the provider reported (bits of `present`).
  enum Field : uint32_t {
    kPromptTokens = 1u << 0,
    kCompletionTokens = 1u << 1,
    kTotalTokens = 1u << 2,
    kCachedTokens = 1u << 3,
    kCacheCreationTokens = 1u << 4,
    kReasoningTokens = 1u << 5,
  };

  // Every prompt token, cached ones included.
  int64_t prompt_tokens = 0;
  // Every generated token, reasoning ones included.
  int64_t completion_tokens = 0;
  // As reported; when not reported (Anthropic), prompt_tokens + completion_tokens.
  int64_t total_tokens = 0;
  // Prompt tokens read from the provider's prompt cache (part of prompt_tokens).
  int64_t cached_tokens = 0;
  // Prompt tokens written to the prompt cache (Anthropic; part of prompt_tokens).
  int64_t cache_creation_tokens = 0;
  // Reasoning ("thinking") tokens (part of completion_tokens).
  int64_t reasoning_tokens = 0;
  // Field bits: a count whose bit is clear was not reported and reads 0 (total_tokens: the sum).
  uint32_t present = 0;
  // Whose answer it was (kAuto resolved to the provider detected).
  Provider provider = Provider::kAuto;

  bool Has(Field field) const { return (present & field) != 0; }
  friend bool operator==(const Usage& a, const Usage& b) = default;
};

// Reads the usage of one provider answer fed in chunks. Movable, not copyable; a moved-from
// reader may only be destroyed or assigned to. Each reader has its own simdjson parser,
// whose buffers grow with the largest event it parsed (several bytes per byte of the event).
class UsageReader {
 public:
  struct Options {
    // The most bytes one event's data (or one JSON element, or a plain JSON body) may hold; the
    // reader keeps at most this much plus one line's bookkeeping, and drops a larger event as it
    // grows (counted in Stats::oversized_events). Default: 1 MiB, well above the largest usage
    // event providers send (a Responses API `response.completed` repeats the whole answer: raise
    // it for very long answers). REQUIRES: > 0.
    size_t max_event_bytes = size_t{1} << 20;
  };

  // What the reader skipped or read; for logs and tests.
  struct Stats {
    int64_t events = 0;            // SSE events with data, and JSON elements, seen
    int64_t usage_reports = 0;     // events that carried a usage object that was read
    int64_t malformed_events = 0;  // data that is not a JSON object (other than [DONE])
    int64_t oversized_events = 0;  // dropped for exceeding max_event_bytes
    int64_t rejected_counts = 0;   // counts ignored: negative, fractional, not a number
    friend bool operator==(const Stats& a, const Stats& b) = default;
  };

  explicit UsageReader(Provider provider);
  UsageReader(Provider provider, const Options& options);
  ~UsageReader();
  UsageReader(UsageReader&&) noexcept;
  UsageReader& operator=(UsageReader&&) noexcept;

  // Reads the next bytes of the answer; any chunking gives the same result. Never fails: what
  // cannot be read is counted in stats(). REQUIRES: Finish() has not been called.
  void Feed(std::string_view bytes);

  // Ends the answer and gives its usage: NotFound ("usage: the answer reported no usage ...")
  // when no event reported any count (an OpenAI stream without include_usage, a cut-off
  // stream), never zeros. Calling it again gives the same result.
  absl::StatusOr<Usage> Finish();

  const Stats& stats() const;

 private:
  class Impl;
  std::unique_ptr<Impl> impl_;
};

// The usage of a whole answer (a JSON body, or a whole SSE stream): UsageReader fed `body` at
// once with max_event_bytes = max(body.size(), 1 MiB). NotFound when it reports none.
absl::StatusOr<Usage> ReadUsage(Provider provider, std::string_view body);

// For an OpenAI-style chat or completions request (a "messages" or a "prompt" member) with
// "stream": true: the body with "stream_options": {"include_usage": true}, so that the stream
// ends with a usage chunk. A body that already asks for it, does not stream ("stream" absent or
// false) or is not chat/completions (a Responses API "input" request reports usage anyway) comes
// back unchanged, byte for byte. Where "stream_options" is absent the member is inserted before
// the closing brace and the rest is kept byte for byte; where it exists (an object without
// include_usage, or include_usage false, which is overridden) or is null, the body is rewritten
// minified with its members in their order. Errors (InvalidArgument): "usage: request body: not
// JSON (...)", "...: not a JSON object", "...: stream must be a boolean, got ...",
// "...: stream_options must be an object, got ...", "...: duplicate member stream_options".
// REQUIRES: the request goes to an OpenAI-compatible API (Anthropic's refuses the member).
absl::StatusOr<std::string> IncludeUsageInStream(std::string_view request_body);

struct EstimateOptions {
  // Tokens each message adds around its content besides its role's text (which is counted as
  // text): OpenAI's documented count for its chat models ("How to count tokens with tiktoken",
  // openai-cookbook). Default: 3. REQUIRES: >= 0.
  int64_t tokens_per_message = 3;
  // Tokens every request adds (the reply's priming, <|start|>assistant<|message|>). Default: 3.
  // REQUIRES: >= 0.
  int64_t tokens_per_request = 3;
  // Tokens per image part, whatever its size (OpenAI's high-detail 1024 x 1024 image is 765;
  // low detail is 85). Default: 765. REQUIRES: >= 0.
  int64_t tokens_per_image = 765;
  // Chinese, Japanese and Korean characters per token: 1.2 fits o200k_base (GPT-4o, GPT-4.1,
  // o-series), 0.8 fits cl100k_base (GPT-4, GPT-3.5). Default: 1.2. REQUIRES: > 0.
  double cjk_chars_per_token = 1.2;
  // Multiplies the estimate: > 1 errs on the side of reserving too much (with 1.1 the estimate
  // was at least o200k_base's count for 96% of the measured chat requests, 1.15 for 99%).
  // Default: 1.0. REQUIRES: >= 0.
  double scale = 1.0;
};

// A cheap estimate of the prompt tokens of an LLM request body, for TokenBudget::TryReserve
// before the call (add the answer's max_tokens to reserve a whole call). It reads the text a
// model sees: OpenAI chat `messages[].role/content` (string or parts: text, image_url), `name`,
// `tool_calls`; completions `prompt` (string or strings); Responses `instructions` and `input`
// (string or items); Anthropic `system` and `messages` (content blocks: text, image, tool_use
// input, tool_result); Gemini `contents[].parts[].text` and `systemInstruction`; DashScope
// native `input.messages` / `input.prompt`; and `tools` (their JSON, minified). Text is costed
// per run of characters: an ASCII word of n letters 1 + (n - 1) / 10 tokens (rounded down),
// digits by threes, each ASCII punctuation mark or symbol 0.6, a run of line breaks or tabs 0.5,
// a run of two or more spaces 1, CJK characters `cjk_chars_per_token` per token, and other
// non-ASCII text 2.5 bytes of UTF-8 per token. A body that is not a JSON object is costed as
// plain text. Never fails; O(body size), one simdjson parse.
//
// Measured error (benchmarks/python/bench_token_estimate.py, 800 held-out pieces of English
// prose, Chinese prose, code and JSON, 20 to 12,000 characters; docs/usage.md has the tables):
// against o200k_base, a chat request's estimate is within 3.9% of OpenAI's count at the median
// and 8.7% at the 90th percentile (text alone: 4.1% and 10.6%), with a median bias of -1%;
// cl100k_base with cjk_chars_per_token 0.8 does as well. Short English or code pieces err most
// (up to about 15% at their 90th percentile). Other scripts (Cyrillic, Arabic, Indic, emoji)
// were not measured: the 2.5 bytes per token is a rough guess there. Neither were other vendors'
// tokenizers (Claude, Gemini, Qwen): calibrate `scale` against the usage they report.
int64_t EstimatePromptTokens(std::string_view request_body, const EstimateOptions& options = {});

// The text part of the estimate alone: the tokens of `text` by the rule above (no overheads).
int64_t EstimateTextTokens(std::string_view text, const EstimateOptions& options = {});

}  // namespace v1
}  // namespace sluice

#endif  // SLUICE_USAGE_H_
