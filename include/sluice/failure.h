// -----------------------------------------------------------------------------
// File: sluice/failure.h
// -----------------------------------------------------------------------------
//
// What went wrong with one call to an LLM provider, in the terms a fallback decision needs.
//
// The caller reports an `AttemptOutcome`: the HTTP status (0 when no response arrived), the
// transport error, the provider's error body if it sent one, and its Retry-After. `Classify`
// turns that into a `Failure`:
//
//   status / transport                          body says                       Failure
//   connect refused, DNS                        -                               kConnect
//   timed out, 408, 504                         -                               kTimeout
//   connection reset, stream cut                -                               kReset
//   429                                         (anything)                      kRateLimited
//   401, 403                                    -                               kAuth
//   other 5xx (529 "overloaded" included)       -                               kServer
//   400, 404, 413, 422, any 4xx                 context length exceeded         kContextLength
//   any 4xx                                     content filtered                kContentFilter
//   any 4xx                                     rate limited / quota            kRateLimited
//   other 4xx                                   -                               kClient
//
// `ClassifyProviderError` reads the error bodies of OpenAI, Azure OpenAI, Anthropic, Gemini and
// DashScope (Qwen) with simdjson: their `error.code`, `error.type`, `error.status`, top-level
// `code`, and the message text. It never throws; anything it cannot read is kNone.
//
// `ParseRetryAfter` reads a Retry-After header value: delta-seconds (fractions allowed) or an
// HTTP-date (RFC 9110, IMF-fixdate).
//
// Example:
//
//   sluice::AttemptOutcome outcome{.http_status = r.status, .error_body = r.body};
//   if (auto ra = sluice::ParseRetryAfter(r.header("retry-after"), absl::Now())) {
//     outcome.retry_after = *ra;
//   }
//   sluice::Failure failure = sluice::Classify(outcome);   // kRateLimited for a 429
//
// Thread-safety: free functions without shared state; safe from any thread.

#ifndef SLUICE_FAILURE_H_
#define SLUICE_FAILURE_H_

#include <optional>
#include <string_view>

#include "absl/time/time.h"

namespace sluice {
inline namespace v1 {

// Transport errors: what happened when no (complete) response arrived.
enum class TransportError {
  kNone,
  kConnect,  // refused, unreachable, DNS, TLS handshake
  kTimeout,  // no (first) byte within the attempt's timeout
  kReset,    // the connection or stream broke mid-way
};

// Failure classes, in the order of the table above. Values are pinned (the C ABI uses them).
enum class Failure {
  kNone = 0,
  kConnect = 1,
  kTimeout = 2,
  kReset = 3,
  kRateLimited = 4,
  kServer = 5,
  kAuth = 6,
  kContextLength = 7,
  kContentFilter = 8,
  kClient = 9,
};
inline constexpr int kFailureCount = 10;

// "connect", "timeout", "reset", "rate_limited", "server", "auth", "context_length",
// "content_filter", "client", "none".
std::string_view FailureName(Failure failure);

// How one attempt ended.
struct AttemptOutcome {
  // The response's status; 0 when none arrived (see `transport`). 2xx and 3xx are success.
  int http_status = 0;
  TransportError transport = TransportError::kNone;
  // The provider's error body, if any (JSON); read only to classify 4xx answers. Not kept.
  std::string_view error_body;
  // The provider's Retry-After (ParseRetryAfter); zero when it sent none.
  absl::Duration retry_after = absl::ZeroDuration();
  // How long the attempt took (for the breaker's slow-call ratio); zero: measured by the policy
  // from when the attempt was handed out (plus its delay) to when its outcome was reported.
  absl::Duration latency = absl::ZeroDuration();
  // Time to first token, if known (reported to a Balancer).
  absl::Duration ttft = absl::ZeroDuration();
};

// The failure class of an outcome (kNone for a success). A transport error wins over a status.
Failure Classify(const AttemptOutcome& outcome);

// The failure class a provider's error body states, or kNone when it states none this function
// knows (only kContextLength, kContentFilter, kRateLimited and kServer are ever returned).
Failure ClassifyProviderError(std::string_view body);

// A Retry-After header value as a duration from `now`: "120", "1.5", or
// "Wed, 21 Oct 2026 07:28:00 GMT". Negative results clamp to zero. std::nullopt when the value
// is empty or malformed.
std::optional<absl::Duration> ParseRetryAfter(std::string_view value, absl::Time now);

}  // namespace v1
}  // namespace sluice

#endif  // SLUICE_FAILURE_H_
