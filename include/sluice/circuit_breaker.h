// -----------------------------------------------------------------------------
// File: sluice/circuit_breaker.h
// -----------------------------------------------------------------------------
//
// `CircuitBreaker` stops calling a target that is failing, and finds out by itself when it is
// back. It is the per-target breaker of `FallbackPolicy` (sluice/fallback_policy.h) and can be
// used alone.
//
//            trip                      open time elapsed
//   CLOSED --------------> OPEN  ---------------------------> HALF_OPEN
//      ^                    ^                                   |   |
//      |                    +------- a probe fails -------------+   |
//      +-------------- half_open_probes probes succeed -------------+
//
// CLOSED trips when either
//   * `consecutive_failures` calls in a row failed, or
//   * over the sliding `window` (10 buckets) at least `minimum_calls` calls finished, and the
//     failed share reached `failure_ratio` or the slow share (latency >= `slow_call_duration`)
//     reached `slow_call_ratio`.
// OPEN refuses every call for the open time: `open_time` on the first trip, multiplied by
// `open_time_multiplier` on each further trip without a recovery in between, at most
// `max_open_time`. Then HALF_OPEN lets `half_open_probes` calls through; all of them succeeding
// closes the breaker (and forgets the trips), any failing opens it again, for longer.
//
// These are resilience4j's CircuitBreaker rules (failure and slow-call rates, minimum calls,
// half-open probes) plus Sentinel's consecutive-error trigger and Envoy's growing ejection time;
// see docs/fallback.md.
//
// Example:
//
//   auto breaker = sluice::CircuitBreaker::Create({.consecutive_failures = 5}).value();
//   sluice::CircuitBreaker::Permission p = breaker->TryAcquire();
//   if (!p.allowed) return Unavailable(p.retry_after);
//   Response r = Call();
//   breaker->Record(p, r.ok() ? sluice::CircuitBreaker::Result::kSuccess
//                             : sluice::CircuitBreaker::Result::kFailure, r.latency);
//
// Thread-safety: every method may be called from any thread at once. Admission while closed is
// one atomic load; records and decisions while open or half-open take the breaker's mutex (well
// under a microsecond). `on_transition` runs on the thread whose call caused the change, after
// the lock is released; two threads racing may deliver their transitions out of order.

#ifndef SLUICE_CIRCUIT_BREAKER_H_
#define SLUICE_CIRCUIT_BREAKER_H_

#include <array>
#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <string_view>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "sluice/internal/mutex.h"
#include "absl/time/time.h"
#include "sluice/clock.h"

namespace sluice {
inline namespace v1 {

// sluice::CircuitBreaker
class CircuitBreaker {
 public:
  // Values are pinned (the C ABI uses them).
  enum class State { kClosed = 0, kOpen = 1, kHalfOpen = 2 };

  // A state change, as `Options::on_transition` sees it.
  struct Transition {
    State from;
    State to;
    int64_t at_nanos;  // on the breaker's clock
    // Why: "consecutive failures", "failure ratio", "slow-call ratio", "open time elapsed",
    // "probe failed", "probes succeeded". Static storage.
    std::string_view reason;
    // Trips in a row without a recovery (the open time grows with it); 0 after closing.
    int64_t trips;
    // How long it stays open (to == kOpen); zero otherwise.
    absl::Duration open_for;
  };

  struct Options {
    // Failures in a row that trip the breaker. Default 5. 0 disables this trigger.
    int64_t consecutive_failures = 5;
    // Failed share of the window's calls that trips it. Default 0.5. In [0, 1]; 0 disables.
    double failure_ratio = 0.5;
    // Slow share of the window's calls that trips it. Default 0 (disabled). In [0, 1].
    double slow_call_ratio = 0;
    // A call at least this long is slow. Default 30 s. > 0.
    absl::Duration slow_call_duration = absl::Seconds(30);
    // The sliding window the ratios are measured over (10 buckets). Default 10 s. > 0.
    absl::Duration window = absl::Seconds(10);
    // Calls the window must hold before a ratio can trip. Default 10. >= 1.
    int64_t minimum_calls = 10;
    // How long the first trip keeps it open. Default 5 s. > 0.
    absl::Duration open_time = absl::Seconds(5);
    // Each further trip without a recovery multiplies the open time by this. Default 2. >= 1.
    double open_time_multiplier = 2;
    // The open time never exceeds this. Default 5 minutes. >= open_time.
    absl::Duration max_open_time = absl::Minutes(5);
    // Calls let through while half-open; all must succeed to close. Default 3. >= 1.
    int64_t half_open_probes = 3;
    // Called on every state change (see the thread-safety note above). May be empty.
    std::function<void(const Transition&)> on_transition;
  };

  // What a call may do.
  struct Permission {
    bool allowed = false;
    // The call is a half-open probe: its result decides the breaker's state.
    bool probe = false;
    // Refused: when the breaker will let probes through (0 if probes are out already).
    absl::Duration retry_after = absl::ZeroDuration();
    // Which state the permission was granted in (opaque): results of calls granted before the
    // latest state change count for nothing.
    int64_t generation = 0;
  };

  enum class Result {
    kSuccess,
    kFailure,
    // Neither (a client error, a cancelled call): frees a probe slot, counts nowhere.
    kIgnored,
  };

  struct Stats {
    State state = State::kClosed;
    // The window's calls, failures and slow calls.
    int64_t calls = 0;
    int64_t failures = 0;
    int64_t slow_calls = 0;
    int64_t consecutive_failures = 0;
    int64_t trips = 0;
    // Open: when it half-opens, on the breaker's clock; 0 otherwise.
    int64_t open_until_nanos = 0;
    // Calls refused since creation.
    int64_t refused = 0;
  };

  // Errors: InvalidArgument naming the bad field.
  static absl::StatusOr<std::unique_ptr<CircuitBreaker>> Create(
      Options options, const Clock* clock = Clock::Steady());
  // Checks options as Create would, prefixing field names with `prefix`.
  static absl::Status Validate(const Options& options, std::string_view prefix = "");

  CircuitBreaker(const CircuitBreaker&) = delete;
  CircuitBreaker& operator=(const CircuitBreaker&) = delete;

  // Asks to make a call. An allowed call must be followed by exactly one Record with the same
  // permission (a half-open probe holds its slot until then). Closed: one atomic load, no lock.
  Permission TryAcquire();
  // Reports how an allowed call went. `latency` feeds the slow-call ratio (zero: not slow).
  // Results of calls admitted before the latest state change count for nothing.
  void Record(const Permission& permission, Result result,
              absl::Duration latency = absl::ZeroDuration());
  // The same at a time already read from the breaker's clock (saves a clock read).
  void RecordAt(const Permission& permission, Result result, absl::Duration latency,
                int64_t now_nanos);

  State state() const;
  Stats stats() const;

 private:
  CircuitBreaker(Options options, const Clock* clock);
  struct Bucket {
    int64_t index = -1;  // which bucket_width-long slice of time this holds
    int64_t calls = 0, failures = 0, slow = 0;
  };
  static constexpr int kBuckets = 10;

  // Moves the state; the transition is returned for the caller to publish after unlocking.
  Transition MoveTo(State to, int64_t now, std::string_view reason)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void Publish(const Transition& t) const;
  // The bucket for `now`, after dropping the buckets that slid out of the window from the
  // running totals.
  Bucket& BucketAt(int64_t now) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The window's totals as of `now` (for stats(): no record may have slid the window lately).
  void Totals(int64_t now, int64_t& calls, int64_t& failures, int64_t& slow) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const Options options_;
  const Clock* const clock_;
  const int64_t bucket_width_;
  mutable internal::Mutex mu_;
  State state_ ABSL_GUARDED_BY(mu_) = State::kClosed;
  // Increments on every state change: a permission from an older generation is stale.
  int64_t generation_ ABSL_GUARDED_BY(mu_) = 0;
  std::array<Bucket, kBuckets> buckets_ ABSL_GUARDED_BY(mu_);
  int64_t head_ ABSL_GUARDED_BY(mu_) = -1;  // the newest bucket's index
  int64_t window_calls_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t window_failures_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t window_slow_ ABSL_GUARDED_BY(mu_) = 0;
  // The generation while closed, -1 otherwise: TryAcquire's lock-free path.
  std::atomic<int64_t> closed_generation_{0};
  int64_t consecutive_failures_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t trips_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t open_until_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t probes_out_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t probes_succeeded_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t refused_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace v1
}  // namespace sluice

#endif  // SLUICE_CIRCUIT_BREAKER_H_
