// -----------------------------------------------------------------------------
// File: sluice/failure.h
// -----------------------------------------------------------------------------
//
// How one call to an LLM provider ended, in one vocabulary for every object that learns from
// it: the Balancer (cooldowns, outlier ejection, error rates) and the FallbackPolicy (retry,
// fall back or stop; its circuit breakers).
//
// The caller reports an `AttemptOutcome`: the HTTP status (0 when no response arrived), the
// transport error, the provider's error body if it sent one, its Retry-After, the latency and
// time to first token. Its `Failure` class comes from `Classify` (sluice/provider_error.h), which
// reads the provider's error body, unless the caller states it in `failure`:
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
//   the caller dropped the attempt unreported   -                               kAbandoned
//
// Example:
//
//   sluice::AttemptOutcome outcome{.http_status = r.status, .error_body = r.body,
//                                  .latency = r.elapsed};
//   pick.Complete(outcome);                              // the Balancer
//   call.Next(outcome);                                  // the FallbackPolicy
//
// Thread-safety: values and a pure function; safe from any thread.

#ifndef SLUICE_FAILURE_H_
#define SLUICE_FAILURE_H_

#include <cstdint>
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
  kAbandoned = 10,  // the caller gave the attempt up without reporting it (a dropped Pick)
};
inline constexpr int kFailureCount = 11;

// "connect", "timeout", "reset", "rate_limited", "server", "auth", "context_length",
// "content_filter", "client", "abandoned", "none".
std::string_view FailureName(Failure failure);
// The failure class named `name` (as FailureName spells it), or std::nullopt.
std::optional<Failure> FailureFromName(std::string_view name);

// Whether the failure says something about the endpoint or provider (it was unwell), rather than
// about this request (kClient, kContextLength, kContentFilter) or nothing (kNone, kAbandoned).
bool BlamesTarget(Failure failure);

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
  // Tokens the call used, if known (a Balancer's per-endpoint accounting).
  int64_t prompt_tokens = 0;
  int64_t completion_tokens = 0;
  // The failure class when the caller knows it better than the status says (kAbandoned, or a
  // class its client library reported); kNone (the default): classified by Classify.
  Failure failure = Failure::kNone;
};

}  // namespace v1
}  // namespace sluice

#endif  // SLUICE_FAILURE_H_
