// -----------------------------------------------------------------------------
// File: sluice/decision.h
// -----------------------------------------------------------------------------
//
// `Decision` is the one answer type of every admission object (RateLimiter, LeakyBucket,
// ConcurrencyLimiter, TokenBudget): may the request go, and if not, when to come back. Its
// fields are the ones HTTP rate-limit headers carry, and `RateLimitHeaders()` renders them:
//
//   * `RateLimit-Policy` and `RateLimit` (IETF httpapi draft "RateLimit header fields for HTTP",
//     structured-field form: `"name";q=100;w=60` and `"name";r=42;t=17`);
//   * the de-facto `X-RateLimit-Limit`, `X-RateLimit-Remaining`, `X-RateLimit-Reset`;
//   * `Retry-After` (RFC 9110, whole seconds, rounded up) on refusals.
//
// Example (a Flask-style handler in C++ terms):
//
//   absl::StatusOr<sluice::Decision> d = limiter->TryAcquire(api_key);
//   if (!d.ok()) return Error(d.status());
//   for (auto& [name, value] : sluice::RateLimitHeaders(*d)) response.AddHeader(name, value);
//   if (!d->allowed) return TooManyRequests();
//
// Thread-safety: `Decision` is a plain value.

#ifndef SLUICE_DECISION_H_
#define SLUICE_DECISION_H_

#include <cstdint>
#include <limits>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/time/time.h"

namespace sluice {
inline namespace v1 {

// sluice::Decision
//
// For objects with several windows (per second and per day, say) the numbers describe the
// *binding* window: the one that refused, or when all allowed, the one with the least left.
struct Decision {
  // True when the request may go (after `delay_nanos`, for shaping objects).
  bool allowed = false;
  // The binding window's capacity: requests (or tokens) per `window_nanos` including burst.
  int64_t limit = 0;
  // What is left in the binding window after this decision. Never negative except in a
  // TokenBudget in debt, where it is the (negative) balance.
  int64_t remaining = 0;
  // Refused: the earliest time after which the same request could be allowed. 0 when allowed.
  int64_t retry_after_nanos = 0;
  // Until the binding window is whole again if nothing else arrives.
  int64_t reset_after_nanos = 0;
  // Shaping (LeakyBucket): how long the caller must wait before proceeding. 0 elsewhere.
  int64_t delay_nanos = 0;
  // The binding window's period (the `w` of RateLimit-Policy). 0 when not window-based.
  int64_t window_nanos = 0;
  // When this decision's charge was recorded: set on allowed decisions of RateLimiter
  // (TryAcquire, Start) and LeakyBucket, on the object's clock (the Redis server's in cluster
  // scope). Opaque: only the object's Refund reads it, to give back exactly that charge.
  // kNoCharge when nothing was recorded that can be given back (refusals, peeks, the cluster
  // failure mode's local decisions, leased mode).
  static constexpr int64_t kNoCharge = std::numeric_limits<int64_t>::min();
  int64_t charged_at_nanos = kNoCharge;

  absl::Duration retry_after() const { return absl::Nanoseconds(retry_after_nanos); }
  absl::Duration reset_after() const { return absl::Nanoseconds(reset_after_nanos); }
  absl::Duration delay() const { return absl::Nanoseconds(delay_nanos); }
  absl::Duration window() const { return absl::Nanoseconds(window_nanos); }
};

// sluice::HeaderStyle
//
// Which header families `RateLimitHeaders` renders; combine with `|`.
enum HeaderStyle : unsigned {
  kIetfHeaders = 1u << 0,     // RateLimit-Policy + RateLimit
  kXRateLimitHeaders = 1u << 1,  // X-RateLimit-Limit / -Remaining / -Reset
  kRetryAfterHeader = 1u << 2,   // Retry-After, only on refusals
  kAllHeaders = kIetfHeaders | kXRateLimitHeaders | kRetryAfterHeader,
};

// Renders `decision` as HTTP response headers, in a stable order. `policy_name` names the
// policy in the IETF fields (a structured-field string; characters other than printable ASCII
// and the quote and backslash are dropped). Seconds are rounded up, so a client that waits the
// advertised time is never refused for having come back early.
std::vector<std::pair<std::string, std::string>> RateLimitHeaders(
    const Decision& decision, unsigned styles = kAllHeaders,
    std::string_view policy_name = "sluice");

// Whole seconds, rounded up, of a non-negative nanosecond count (negative counts give 0).
int64_t CeilSeconds(int64_t nanos);

}  // namespace v1
}  // namespace sluice

#endif  // SLUICE_DECISION_H_
