// -----------------------------------------------------------------------------
// File: sluice/leaky_bucket.h
// -----------------------------------------------------------------------------
//
// `LeakyBucket` shapes traffic: instead of refusing a burst it spreads it out. Each call returns
// the delay after which the caller may proceed, so calls leave at a steady `rate` per `per`
// (after an optional initial `burst`), as Sentinel's queueing mode and the seed's leaky bucket
// intend. A call whose delay would exceed `max_wait` is refused and charges nothing.
//
// The bucket never sleeps: it only says how long to wait. The caller waits with whatever its
// event loop offers (the Python layer uses gevent.sleep or asyncio.sleep), so a gevent hub keeps
// serving other greenlets. Departures obey the GCRA bound of sluice/window.h: over any interval
// of length t, at most `burst + floor(t * rate / per)` units depart.
//
// A granted slot is committed: a caller that then gives up leaves a gap in the schedule (the
// bucket errs towards sending less, never more).
//
// Example:
//
//   sluice::LeakyBucket::Options options;
//   options.rate = 20;                       // 20 calls per second to the provider
//   options.max_wait = absl::Seconds(2);
//   auto bucket = sluice::LeakyBucket::Create(options).value();
//   absl::StatusOr<sluice::Decision> d = bucket->TryAcquire("openai:gpt-4o");
//   if (d.ok() && d->allowed) SleepCooperatively(d->delay());   // then call the provider
//
// Thread-safety: safe for concurrent use by any number of threads; lock-free on the decision path.

#ifndef SLUICE_LEAKY_BUCKET_H_
#define SLUICE_LEAKY_BUCKET_H_

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "sluice/clock.h"
#include "sluice/cluster.h"
#include "sluice/scope.h"
#include "sluice/decision.h"
#include "sluice/pending.h"

namespace sluice {
inline namespace v1 {

namespace internal {
class GcraBackend;
}  // namespace internal

// sluice::LeakyBucket
class LeakyBucket {
 public:
  // The scope options (max_keys, shared_region, cluster) are ScopeOptions's: sluice/scope.h.
  struct Options : ScopeOptions {
    // Units leaving per `per`. Required, > 0.
    int64_t rate = 0;
    // Default: one second. Must be > 0.
    absl::Duration per = absl::Seconds(1);
    // Units an idle key may send at once with no delay. Default: 1 (strict pacing). >= 1.
    int64_t burst = 1;
    // The longest delay a call accepts; longer ones are refused. Default: 1 s. >= 0.
    absl::Duration max_wait = absl::Seconds(1);
    // Scope notes: a host region takes SharedRegionBytesForWindows(1, max_keys) bytes. In
    // cluster scope the schedule lives in Redis, so every host's calls leave at one steady rate;
    // strict mode only (kLeased is refused: a shaper cannot lease a schedule), `per` must be a
    // whole number of microseconds, and max_wait is rounded down to one.
  };

  // Validates `options` (errors name the field) and builds a bucket reading `clock`.
  static absl::StatusOr<std::unique_ptr<LeakyBucket>> Create(
      const Options& options, const Clock* clock = Clock::Steady());

  LeakyBucket(const LeakyBucket&) = delete;
  LeakyBucket& operator=(const LeakyBucket&) = delete;
  ~LeakyBucket();

  // Books `cost` units for `key`. Allowed: `delay_nanos` says how long to wait before going.
  // Refused (the delay would exceed max_wait): `retry_after_nanos` says when to ask again.
  // Errors: InvalidArgument if cost < 1 or cost could never fit within max_wait;
  // ResourceExhausted as for RateLimiter; in cluster scope, Redis configuration errors as for
  // RateLimiter::TryAcquire. Thread-safe.
  absl::StatusOr<Decision> TryAcquire(std::string_view key, int64_t cost = 1);
  // As TryAcquire, at an explicit time on the bucket's clock. In cluster scope the Redis server's
  // clock decides and `now_nanos` is not used.
  absl::StatusOr<Decision> TryAcquireAt(std::string_view key, int64_t cost, int64_t now_nanos);
  // The names before sluice 0.2 (one verb per meaning: docs/architecture.md, "Verbs").
  [[deprecated("use TryAcquire")]] absl::StatusOr<Decision> Acquire(std::string_view key,
                                                                    int64_t cost = 1) {
    return TryAcquire(key, cost);
  }
  [[deprecated("use TryAcquireAt")]] absl::StatusOr<Decision> AcquireAt(std::string_view key,
                                                                        int64_t cost,
                                                                        int64_t now_nanos) {
    return TryAcquireAt(key, cost, now_nanos);
  }

  // Starts TryAcquire and returns at once: in cluster scope the reply is on its way (see
  // sluice/pending.h), else it is already decided. Errors as for TryAcquire (Redis configuration
  // errors in PendingDecision::status()). Thread-safe.
  absl::StatusOr<PendingDecision> Start(std::string_view key, int64_t cost = 1);

  // Gives back the departure that `booked` (an allowed Decision of TryAcquire, TryAcquireAt or
  // Start on this bucket, for `key`, with that cost) reserved, when the caller will not send after
  // all (a later check refused the request). The key's schedule moves back by what is left of the
  // booking: cost * per / rate minus the time since it was booked, so refunded at once, the
  // later callers' slots come as if it had never been booked, and later it never gives back
  // slots that have already passed (the schedule's rate holds for the bookings that remain).
  // Call it at most once per booking. Cluster scope: one round trip; dropped (OK) if Redis
  // cannot be reached; a decision of the failure mode gives nothing back. Errors:
  // InvalidArgument if `booked` was refused or cost is out of range (as TryAcquire); Redis
  // configuration errors. Thread-safe.
  absl::Status Refund(std::string_view key, int64_t cost, const Decision& booked);

  // Cluster scope: decisions made by the failure mode because Redis did not answer.
  int64_t failure_mode_decisions() const;

  int64_t DropIdleKeys();
  int64_t key_count() const;
  const Options& options() const { return options_; }

 private:
  LeakyBucket(const Options& options, std::unique_ptr<internal::GcraBackend> backend);
  // InvalidArgument unless 1 <= cost <= burst + max_wait * rate / per.
  absl::Status CheckCost(int64_t cost) const;

  Options options_;
  std::unique_ptr<internal::GcraBackend> backend_;  // the scope: process, host, Redis
};

}  // namespace v1
}  // namespace sluice

#endif  // SLUICE_LEAKY_BUCKET_H_
