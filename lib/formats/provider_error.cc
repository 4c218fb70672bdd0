#include "sluice/provider_error.h"

#include <simdjson.h>

#include <array>
#include <cmath>
#include <string>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "formats/canonical_json.h"

namespace sluice {
inline namespace v1 {
namespace {

// Phrases providers use, lower case. Codes and types are matched the same way as messages.
constexpr std::array<std::string_view, 11> kContextLength = {
    "context_length_exceeded",      // OpenAI, Azure code
    "maximum context length",       // OpenAI message
    "context window",               // several
    "context length",               // vLLM, SGLang
    "prompt is too long",           // Anthropic
    "too many tokens",              // several
    "exceeds the maximum number of tokens",  // Gemini
    "input length",                 // DashScope "Range of input length should be ..."
    "reduce the length",            // OpenAI message
    "string_above_max_length",      // OpenAI code
    "max_tokens is too large",      // several
};
constexpr std::array<std::string_view, 6> kContentFilter = {
    "content_filter",               // Azure code, finish_reason
    "content management policy",    // Azure message
    "content_policy_violation",     // OpenAI images
    "datainspectionfailed",         // DashScope code
    "safety",                       // Gemini "SAFETY"
    "inappropriate content",        // DashScope message
};
constexpr std::array<std::string_view, 7> kRateLimit = {
    "rate_limit",                   // OpenAI code, Anthropic type
    "rate limit",
    "throttling",                   // DashScope
    "resource_exhausted",           // Gemini status
    "too many requests",
    "insufficient_quota",           // OpenAI: this key is out of quota; another target may not be
    "quota",
};
constexpr std::array<std::string_view, 3> kServer = {
    "overloaded",                   // Anthropic overloaded_error
    "server_error",                 // OpenAI type
    "service unavailable",
};

template <size_t N>
bool Mentions(const std::string& text, const std::array<std::string_view, N>& phrases) {
  for (std::string_view p : phrases) {
    if (absl::StrContains(text, absl::string_view(p.data(), p.size()))) return true;
  }
  return false;
}

// Appends a string field of `object` (if it is one) to `out`, lower-cased, with a separator.
void Collect(simdjson::dom::object object, std::string_view field, std::string& out) {
  std::string_view value;
  if (object[field].get_string().get(value) != simdjson::SUCCESS) return;
  out.push_back('\n');
  out.append(value.data(), std::min<size_t>(value.size(), 4096));  // messages can be long
}

}  // namespace

Failure ClassifyProviderError(std::string_view body) {
  body = internal::NonNull(body);
  if (body.empty()) return Failure::kNone;
  thread_local simdjson::dom::parser parser;  // keeps its buffers between calls
  simdjson::dom::element root;
  if (parser.parse(body.data(), body.size()).get(root) != simdjson::SUCCESS) return Failure::kNone;
  simdjson::dom::object top;
  if (root.get_object().get(top) != simdjson::SUCCESS) return Failure::kNone;
  // The fields that carry the reason: {"error": {...}} (OpenAI, Anthropic, Gemini), or the top
  // level itself (DashScope: {"code": ..., "message": ...}).
  std::string text;
  simdjson::dom::object error;
  if (top["error"].get_object().get(error) == simdjson::SUCCESS) {
    for (std::string_view f : {"code", "type", "status", "message"}) Collect(error, f, text);
  } else {
    std::string_view message;
    if (top["error"].get_string().get(message) == simdjson::SUCCESS) {  // {"error": "..."}
      text.append(message.data(), std::min<size_t>(message.size(), 4096));
    }
  }
  for (std::string_view f : {"code", "type", "message"}) Collect(top, f, text);
  absl::AsciiStrToLower(&text);
  // Context length before the rest: "too many tokens" must not read as a rate limit.
  if (Mentions(text, kContextLength)) return Failure::kContextLength;
  if (Mentions(text, kContentFilter)) return Failure::kContentFilter;
  if (Mentions(text, kRateLimit)) return Failure::kRateLimited;
  if (Mentions(text, kServer)) return Failure::kServer;
  return Failure::kNone;
}

Failure Classify(const AttemptOutcome& outcome) {
  if (outcome.failure != Failure::kNone) return outcome.failure;  // the caller knows better
  switch (outcome.transport) {
    case TransportError::kConnect: return Failure::kConnect;
    case TransportError::kTimeout: return Failure::kTimeout;
    case TransportError::kReset: return Failure::kReset;
    case TransportError::kNone: break;
  }
  const int s = outcome.http_status;
  if (s == 0) return Failure::kConnect;  // neither a response nor a transport error: unreachable
  if (s < 400) return Failure::kNone;
  if (s == 429) return Failure::kRateLimited;
  if (s == 401 || s == 403) return Failure::kAuth;
  if (s == 408 || s == 504) return Failure::kTimeout;  // 504: the gateway's upstream timed out
  if (s >= 500) return Failure::kServer;
  const Failure stated = ClassifyProviderError(outcome.error_body);
  if (stated == Failure::kContextLength || stated == Failure::kContentFilter ||
      stated == Failure::kRateLimited) {
    return stated;
  }
  if (s == 413) return Failure::kContextLength;  // Payload Too Large: the prompt is
  return Failure::kClient;
}

std::optional<absl::Duration> ParseRetryAfter(std::string_view value, absl::Time now) {
  const absl::string_view v = absl::StripAsciiWhitespace(absl::string_view(value.data(), value.size()));
  if (v.empty()) return std::nullopt;
  double seconds = 0;
  if (absl::SimpleAtod(v, &seconds)) {
    if (!std::isfinite(seconds)) return std::nullopt;
    if (seconds <= 0) return absl::ZeroDuration();
    return absl::Seconds(std::min(seconds, 1e9));  // beyond ~31 years: clamp
  }
  absl::Time at;
  std::string error;
  if (!absl::ParseTime("%a, %d %b %Y %H:%M:%S GMT", std::string(v), absl::UTCTimeZone(), &at,
                       &error)) {
    return std::nullopt;
  }
  return at > now ? at - now : absl::ZeroDuration();
}

}  // namespace v1
}  // namespace sluice
