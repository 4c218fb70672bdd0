// -----------------------------------------------------------------------------
// File: sluice/fallback_policy.h
// -----------------------------------------------------------------------------
//
// `FallbackPolicy` decides where each attempt of an LLM call goes when providers fail: an ordered
// chain of targets (a model, a provider, or a `Balancer` over replicas or API keys), a circuit
// breaker per target, a retry budget shared by every call, backoff with full jitter that honours
// Retry-After, and one deadline per call. The caller does the I/O with its own HTTP client; the
// policy only decides. Nothing here blocks: a wait is returned as a delay for the caller to
// sleep however its event loop sleeps.
//
//   Call call = policy->Begin();                  first step: attempt on the first open target
//   while (call.step().kind == Step::Kind::kAttempt)
//     sleep(step.delay); send to step.target within step.timeout;
//     call.Next(outcome)                          next step: retry, fall back, or done
//
// After a failed attempt (classified by sluice/failure.h), `Options::actions` says what happens:
//   kRetrySame   the same target again (another endpoint if balanced), at most
//                `max_retries_per_target` times per call, each within the retry budget and after
//                a full-jitter backoff (at least the provider's Retry-After); when refused, as
//                kNextTarget.
//   kNextTarget  the next target in the chain whose breaker admits the call and which is not
//                inside a Retry-After window (a 429 with Retry-After blocks its target for every
//                call until then). Falling to another target needs no retry budget: it adds no
//                load to the failing one.
//   kFatal       stop: the request itself is at fault (a 400), retrying cannot help.
// A context-length failure jumps to `context_length_target` when one is configured (a model
// with a larger window), whatever its action says.
//
// Streaming: call `MarkFirstByte()` when the first byte of an attempt's output reaches the
// client. From then on the call never moves: a failure ends it with ABORTED ("the stream broke
// after the first byte"), so a client never receives two answers spliced together.
//
// Example (a blocking call through a chain primary -> backup):
//
//   sluice::FallbackPolicy::Options options;
//   options.targets = {{.name = "primary", .model = "gpt-4o"},
//                      {.name = "backup", .model = "qwen-turbo"}};
//   auto policy = sluice::FallbackPolicy::Create(std::move(options)).value();
//
//   using Kind = sluice::FallbackPolicy::Step::Kind;
//   sluice::FallbackPolicy::Call call = policy->Begin();
//   while (call.step().kind == Kind::kAttempt) {
//     const sluice::FallbackPolicy::Step& step = call.step();
//     absl::SleepFor(step.delay);                      // or the event loop's own timer
//     Response r = Post(UrlOf(step.target), WithModel(body, step.model), step.timeout);
//     call.Next({.http_status = r.status, .transport = r.transport,
//                .error_body = r.body, .retry_after = r.retry_after});
//   }
//   if (!call.status().ok()) return ErrorResponse(call.status());  // every target failed
//
// Thread-safety: the policy may be shared by any number of threads; `Begin` and everything a
// `Call` does touch only atomics and the per-target breakers' locks. A `Call` is a value owned by
// one thread at a time; it keeps what it needs alive, so it may outlive the policy.

#ifndef SLUICE_FALLBACK_POLICY_H_
#define SLUICE_FALLBACK_POLICY_H_

#include <array>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "sluice/balancer.h"
#include "sluice/circuit_breaker.h"
#include "sluice/clock.h"
#include "sluice/failure.h"
#include "sluice/retry_budget.h"

namespace sluice {
inline namespace v1 {

namespace internal {
struct FallbackCore;
}  // namespace internal

// sluice::FallbackPolicy
class FallbackPolicy {
 public:
  // Values are pinned (the C ABI uses them).
  enum class Action { kRetrySame = 0, kNextTarget = 1, kFatal = 2 };

  // What each failure class does. The defaults retry quick, transient failures on the same
  // target once, move on from slow, throttled or refusing targets, and stop on the request's own
  // faults.
  struct Actions {
    Action connect = Action::kRetrySame;
    Action timeout = Action::kNextTarget;  // a provider that hung once will likely hang again
    Action reset = Action::kRetrySame;
    Action rate_limited = Action::kNextTarget;
    Action server = Action::kRetrySame;
    Action auth = Action::kNextTarget;  // a revoked key: another provider's key may work
    Action context_length = Action::kFatal;  // see Options::context_length_target
    Action content_filter = Action::kFatal;
    Action client = Action::kFatal;
    // The action for `failure` (kNone: kFatal; it is never consulted).
    Action For(Failure failure) const;
    // Sets the action for `failure` (kNone: ignored).
    void Set(Failure failure, Action action);
  };

  struct Target {
    // Unique within the policy; required. Steps carry it for the caller to route by.
    std::string name;
    // The model to ask this target for (steps carry it); with a balancer, the model its endpoints
    // are picked for (empty: any). May be empty.
    std::string model;
    // Optional: every attempt on this target picks an endpoint here and reports the outcome to
    // the pick (cooldowns, outlier ejection, load). May be shared with other policies.
    std::shared_ptr<Balancer> balancer;
    // This target's breaker; default: Options::breaker.
    std::optional<CircuitBreaker::Options> breaker;
  };

  struct Options {
    // The chain, tried in order. 1 to 64 targets.
    std::vector<Target> targets;
    Actions actions;
    // A context-length failure jumps to the target of this name (a model with a larger window),
    // if the call has not tried it yet. Default: none (the failure's action applies).
    std::string context_length_target;
    // kRetrySame retries per target per call. Default 1. In [0, 100].
    int64_t max_retries_per_target = 1;
    // Every target's breaker unless the target sets its own.
    CircuitBreaker::Options breaker;
    // Shared by every call of the policy.
    RetryBudget::Options retry_budget;
    // Full-jitter backoff before a retry: uniform in [0, min(backoff_max, base x 2^n)] (Envoy's
    // 25 ms and 10x). Default 25 ms and 250 ms. 0 < base <= max.
    absl::Duration backoff_base = absl::Milliseconds(25);
    absl::Duration backoff_max = absl::Milliseconds(250);
    // A call ends with DEADLINE_EXCEEDED this long after Begin. Default 120 s. > 0.
    absl::Duration deadline = absl::Seconds(120);
    // Each attempt's own limit (Step::timeout never exceeds what remains of the deadline).
    // Default 0: no limit but the deadline. >= 0.
    absl::Duration attempt_timeout = absl::ZeroDuration();
    // Called on every breaker state change, with the target's name (see
    // sluice/circuit_breaker.h for the thread it runs on). May be empty.
    std::function<void(std::string_view target, const CircuitBreaker::Transition&)>
        on_breaker_transition;
  };

  // Per call.
  struct CallOptions {
    // Overrides Options::deadline when > 0.
    absl::Duration deadline = absl::ZeroDuration();
    // Balanced targets: the request's prefix block hashes and affinity key (copied).
    std::vector<uint64_t> prefix_blocks;
    std::string affinity_key;
  };

  struct Step {
    enum class Kind { kAttempt, kSucceeded, kFailed };
    Kind kind = Kind::kFailed;
    // Attempts handed out so far in this call (this one included).
    int64_t attempt = 0;
    // kAttempt: where to send it. The views live as long as the Call.
    size_t target_index = 0;
    std::string_view target;
    std::string_view model;
    // Balanced targets: the endpoint picked (its labels: Call::pick()); empty otherwise.
    std::string_view endpoint_id;
    // kAttempt: wait this long before sending (zero for a first attempt or a fallback).
    absl::Duration delay = absl::ZeroDuration();
    // kAttempt: give up on the attempt after this long (after the delay); the caller reports a
    // timeout. absl::InfiniteDuration() when neither a deadline nor attempt_timeout bounds it.
    absl::Duration timeout = absl::InfiniteDuration();
    // kAttempt: the same target as the previous attempt.
    bool retry = false;
    // The previous attempt's failure (kNone for the first attempt and for kSucceeded).
    Failure failure = Failure::kNone;
    // kFailed: why (UNAVAILABLE: no target left; DEADLINE_EXCEEDED; FAILED_PRECONDITION: a fatal
    // failure; ABORTED: a stream broke after its first byte). OK otherwise.
    absl::Status status;
    // kFailed with UNAVAILABLE: when the first target is usable again (breaker half-opens or
    // Retry-After ends); zero if unknown.
    absl::Duration retry_after = absl::ZeroDuration();
  };

  // What the policy knows about one target (Targets()).
  struct TargetStats {
    std::string name;
    CircuitBreaker::Stats breaker;
    int64_t attempts = 0;
    int64_t successes = 0;
    int64_t failures = 0;
    // Calls that skipped the target (breaker open, Retry-After window, no endpoint).
    int64_t skipped = 0;
    // Inside a provider's Retry-After window until then (nanoseconds on the clock); 0 if not.
    int64_t rate_limited_until_nanos = 0;
  };

  class Call;

  // Errors: InvalidArgument naming the field ("targets[1].name", "breaker.open_time", ...).
  static absl::StatusOr<std::unique_ptr<FallbackPolicy>> Create(
      Options options, const Clock* clock = Clock::Steady());
  ~FallbackPolicy();
  FallbackPolicy(const FallbackPolicy&) = delete;
  FallbackPolicy& operator=(const FallbackPolicy&) = delete;

  // Starts a call; its step() is the first attempt, or kFailed when no target is usable.
  Call Begin();
  Call Begin(const CallOptions& options);

  std::vector<TargetStats> Targets() const;
  // Retries the budget refused since creation; calls and same-target retries in flight now.
  int64_t retries_refused() const;
  int64_t calls_in_flight() const;
  int64_t retries_in_flight() const;
  const Options& options() const;

 private:
  explicit FallbackPolicy(std::shared_ptr<internal::FallbackCore> core);
  std::shared_ptr<internal::FallbackCore> core_;
};

// One call's walk through the chain.
class FallbackPolicy::Call {
 public:
  Call(Call&&) noexcept;
  Call& operator=(Call&&) = delete;
  Call(const Call&) = delete;
  Call& operator=(const Call&) = delete;
  // An unfinished call gives back what it holds: its attempt counts for nothing in the breaker,
  // a balancer pick completes as abandoned.
  ~Call();

  const Step& step() const { return step_; }
  // Reports the current attempt's outcome and returns the next step. REQUIRES: step().kind is
  // kAttempt (otherwise the step is returned unchanged).
  const Step& Next(const AttemptOutcome& outcome);
  // Streaming: the current attempt's first byte reached the client; the call will not move from
  // this attempt any more.
  void MarkFirstByte() { first_byte_ = true; }
  bool first_byte_marked() const { return first_byte_; }
  // The current attempt's balancer pick (nullptr for an unbalanced target or after the attempt).
  const Balancer::Pick* pick() const { return pick_ ? &*pick_ : nullptr; }
  // OK after success; step().status after failure; UNKNOWN ("in progress") before the end.
  absl::Status status() const;

 private:
  friend class FallbackPolicy;
  Call(std::shared_ptr<internal::FallbackCore> core, const CallOptions& options, int64_t now);
  // Hands out an attempt on target `index` if it is usable; notes why not otherwise.
  bool TryTarget(size_t index, int64_t now, absl::Duration delay, RetryBudget::Retry retry);
  // Tries targets from `first` on, in order.
  bool TryFrom(size_t first, int64_t now);
  const Step& Finish(Step::Kind kind, absl::Status status);
  // Fails with UNAVAILABLE, naming why each target was passed over and when the first is back.
  const Step& FinishUnavailable();
  void Note(std::string_view target, std::string_view why);

  std::shared_ptr<internal::FallbackCore> core_;
  RetryBudget::Request request_;
  RetryBudget::Retry retry_;
  CircuitBreaker::Permission permission_;
  std::optional<Balancer::Pick> pick_;
  Step step_;
  int64_t deadline_ = 0;
  int64_t attempt_start_ = 0;
  bool first_byte_ = false;
  uint64_t tried_ = 0;  // bit i: target i was attempted
  std::array<uint8_t, 64> retries_{};  // per target (at most 64 targets, 100 retries)
  std::vector<uint64_t> prefix_blocks_;
  std::string affinity_key_;
  std::string notes_;  // why targets were passed over, for the final status
  int64_t soonest_back_ = 0;
};

}  // namespace v1
}  // namespace sluice

#endif  // SLUICE_FALLBACK_POLICY_H_
