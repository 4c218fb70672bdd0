// -----------------------------------------------------------------------------
// File: sluice/provider_error.h
// -----------------------------------------------------------------------------
//
// Reading what a provider said about a failed call: the failure class of an AttemptOutcome
// (sluice/failure.h has the table), the class a provider's error body states, and its
// Retry-After header.
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

#ifndef SLUICE_PROVIDER_ERROR_H_
#define SLUICE_PROVIDER_ERROR_H_

#include <optional>
#include <string_view>

#include "absl/time/time.h"
#include "sluice/failure.h"

namespace sluice {
inline namespace v1 {

// The failure class of an outcome (kNone for a success): its `failure` when set, else a
// transport error wins over a status, and a 4xx is refined by its error body.
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

#endif  // SLUICE_PROVIDER_ERROR_H_
