// -----------------------------------------------------------------------------
// File: sluice/concurrency_limiter.h
// -----------------------------------------------------------------------------
//
// `ConcurrencyLimiter` caps how many requests per key are in flight at once (Dify's per-app
// "max active requests"). A successful acquire returns a `Permit`: an RAII handle that gives the
// slot back when it is destroyed or released.
//
// A permit is also a *lease*: it expires `lease` after it was granted (or last renewed). A holder
// that never releases (a crashed worker, a lost greenlet, a generator nobody closed) cannot leak
// its slot: once the lease has expired the slot is reclaimed by the next acquire that needs it.
// Long-running holders (a 20-minute streaming workflow) call `Renew()` to keep their slot, so a
// live run is never evicted, unlike Dify's fixed 10-minute eviction (Dify #39177, #35895).
// The check and the take are one atomic step, so N concurrent callers can never push the count
// past the cap (the HLEN-then-HSET race of Dify's RateLimit).
//
// Example:
//
//   sluice::ConcurrencyLimiter::Options options;
//   options.max_in_flight = 10;
//   auto limiter = sluice::ConcurrencyLimiter::Create(options).value();
//   sluice::ConcurrencyLimiter::Permit permit = limiter->TryAcquire("app-7");
//   if (!permit) return TooManyRequests(permit.decision().retry_after());
//   ... serve; the slot is returned when `permit` goes out of scope ...
//
// Thread-safety: the limiter is safe for concurrent use by any number of threads. A Permit is a
// value owned by one thread at a time (it may be moved between threads); it must not outlive the
// limiter that granted it.

#ifndef SLUICE_CONCURRENCY_LIMITER_H_
#define SLUICE_CONCURRENCY_LIMITER_H_

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "sluice/clock.h"
#include "sluice/cluster.h"
#include "sluice/scope.h"
#include "sluice/decision.h"
#include "sluice/pending.h"
#include "sluice/internal/key_digest.h"
#include "sluice/internal/lease_ref.h"

namespace sluice {
inline namespace v1 {

namespace internal {
class LeaseBackend;
}  // namespace internal

// sluice::ConcurrencyLimiter
class ConcurrencyLimiter {
 public:
  // The scope options (max_keys, shared_region, cluster) are ScopeOptions's: sluice/scope.h.
  struct Options : ScopeOptions {
    // Permits per key that may be held at once. Required, >= 1.
    int64_t max_in_flight = 0;
    // How long a permit lives without renewal. Default: 10 minutes. Must be > 0.
    absl::Duration lease = absl::Minutes(10);
    // The Retry-After hint on refusals: holders usually finish sooner than their lease ends.
    // Default: 1 second. Must be >= 0.
    absl::Duration retry_after = absl::Seconds(1);
    // Scope notes: in host scope max_in_flight is at most kMaxSharedRegionInFlight (4096), and
    // the region takes SharedRegionBytesForLeases(max_in_flight, max_keys) bytes (352 MiB for
    // max_in_flight 10 and the default max_keys, 22 MiB for 65,536 keys); a process killed while
    // holding a permit leaves a lease that expires and is taken over. In cluster scope the leases
    // are a sorted set per key in Redis, ending on the Redis server's clock, expired ones
    // reclaimed atomically by the next acquire; strict mode only; `lease` must be whole
    // microseconds and at most 366 days; while Redis cannot answer, acquires follow
    // cluster.on_failure (kLocal: a per-process cap of max_in_flight / local_share, at least 1).
    // A Redis stall never costs a slot for longer than it lasts: releases that cannot reach Redis
    // are kept and sent once it answers, and an acquire whose caller gave up (or whose outcome a
    // dropped connection left unknown) is released by the store when Redis answers.
  };

  class Permit;

  static absl::StatusOr<std::unique_ptr<ConcurrencyLimiter>> Create(
      const Options& options, const Clock* clock = Clock::Steady());

  ConcurrencyLimiter(const ConcurrencyLimiter&) = delete;
  ConcurrencyLimiter& operator=(const ConcurrencyLimiter&) = delete;
  ~ConcurrencyLimiter();

  // Takes a slot for `key` if one is free (expired leases count as free). Never waits.
  // The returned permit is empty (false) when refused; its decision says why.
  // A new key beyond `max_keys` is refused too, with remaining = -1. In cluster scope it waits
  // for Redis (at most the store's timeouts), and a configuration error of the Redis deployment
  // gives an empty permit whose status() says what is wrong (see sluice/redis_store.h,
  // "Errors"). Thread-safe.
  Permit TryAcquire(std::string_view key);
  // As TryAcquire at an explicit time on the limiter's clock (cluster scope: Redis's clock
  // decides, and `now_nanos` only dates the permit's local expiry).
  Permit TryAcquireAt(std::string_view key, int64_t now_nanos);

  // Starts TryAcquire and returns at once: in cluster scope the reply is on its way (see
  // sluice/pending.h), else it is already decided. A Pending dropped before its result is taken
  // releases the slot it got. Thread-safe.
  Pending<Permit> Start(std::string_view key);

  // Per-key caps: TryAcquire, TryAcquireAt and Start with `max_in_flight` for this call instead
  // of Options::max_in_flight, so one limiter serves keys with different caps (plans, tiers,
  // per-app caps kept in the caller's database):
  //
  //   sluice::ConcurrencyLimiter::Permit permit = limiter->TryAcquire(app_id, plan.max_streams);
  //
  // The call takes a slot if fewer than `max_in_flight` permits are held for `key`, whatever
  // caps granted them. When a key's cap changes, new acquires see the new cap and permits held
  // stay valid until released (a lower cap refuses until enough are released). Precondition:
  // max_in_flight >= 1; in host scope also at most Options::max_in_flight (the region keeps that
  // many slots per key). Otherwise the permit is empty and its status() is InvalidArgument
  // naming max_in_flight. In host scope with a cap below Options::max_in_flight, two callers
  // racing for the last slot may both be refused (never both admitted). In cluster scope the
  // kLocal failure mode allows this process max_in_flight / local_share (at least 1).
  // Thread-safe.
  Permit TryAcquire(std::string_view key, int64_t max_in_flight);
  Permit TryAcquireAt(std::string_view key, int64_t max_in_flight, int64_t now_nanos);
  Pending<Permit> Start(std::string_view key, int64_t max_in_flight);

  // Permits currently held for `key`, expired-but-unreclaimed ones excluded. In cluster scope a
  // round trip; -1 if Redis did not answer. Thread-safe.
  int64_t InFlight(std::string_view key);
  // InFlight, started: returns at once (see sluice/pending.h); -1 with a status() for a
  // configuration error. Thread-safe.
  Pending<int64_t> StartInFlight(std::string_view key);

  // Reclaims every expired lease now; returns how many. (Cluster scope: Redis reclaims on every
  // acquire; this reclaims the failure mode's local leases.) Thread-safe.
  int64_t ReclaimExpired();

  // Cluster scope: acquires decided by the failure mode because Redis did not answer.
  int64_t failure_mode_decisions() const;

  const Options& options() const { return options_; }

 private:
  friend class Permit;
  ConcurrencyLimiter(const Options& options, std::unique_ptr<internal::LeaseBackend> backend);
  // The Permit for what the backend granted (or refused).
  Permit MakePermit(const internal::LeaseGrant& grant);
  // InvalidArgument naming max_in_flight unless the scope can take it as a per-call cap.
  absl::Status CheckMaxInFlight(int64_t max_in_flight) const;

  Options options_;
  std::unique_ptr<internal::LeaseBackend> backend_;  // the scope: process, host, Redis
};

// sluice::ConcurrencyLimiter::Permit
//
// Move-only. Releases its slot when destroyed. An empty permit (refused, moved-from or released)
// converts to false.
class ConcurrencyLimiter::Permit {
 public:
  Permit() = default;
  Permit(Permit&& other) noexcept;
  Permit& operator=(Permit&& other) noexcept;
  Permit(const Permit&) = delete;
  Permit& operator=(const Permit&) = delete;
  ~Permit() { (void)Release(); }

  explicit operator bool() const { return owner_ != nullptr; }
  bool held() const { return owner_ != nullptr; }
  const Decision& decision() const { return grant_.decision; }
  // OK, or why Redis could not decide (a configuration error; the permit is then empty). A
  // refusal and the failure mode's decisions have an OK status.
  const absl::Status& status() const { return grant_.error; }
  // When the lease ends, on the limiter's clock.
  int64_t expires_at_nanos() const { return grant_.lease.expires_at_nanos; }

  // Gives the slot back. OK if this permit held it; FailedPrecondition if the lease had already
  // expired and the slot was reclaimed (the work overran its lease). A no-op returning OK on an
  // empty permit. In cluster scope the release is sent without waiting (never blocks) and
  // returns OK; while Redis cannot be reached the store keeps it and sends it when Redis is
  // back (until the lease would have ended anyway).
  absl::Status Release();

  // Extends the lease to `lease` from now (default: the limiter's lease). FailedPrecondition if
  // the lease already expired and was reclaimed, or if the permit is empty. In cluster scope a
  // round trip (Unavailable if Redis did not answer, or a configuration error; the permit is
  // kept either way). InvalidArgument for a lease beyond 366 days in cluster scope.
  absl::Status Renew();
  absl::Status Renew(absl::Duration lease);

  // Starts Renew and returns at once (see sluice/pending.h). The result is Renew's status; when
  // it is FailedPrecondition and the Pending's status() is OK (Redis said the lease expired), the
  // caller should Release() the permit, which then holds nothing (Renew does that itself).
  Pending<absl::Status> StartRenew();
  Pending<absl::Status> StartRenew(absl::Duration lease);

 private:
  friend class ConcurrencyLimiter;
  explicit Permit(const internal::LeaseGrant& grant) : grant_(grant) {}
  // InvalidArgument / FailedPrecondition unless the permit is held and lease > 0.
  absl::Status CheckRenew(absl::Duration lease) const;

  ConcurrencyLimiter* owner_ = nullptr;  // set while the permit holds its slot
  internal::LeaseGrant grant_;           // the decision, the lease, a configuration error
};

}  // namespace v1
}  // namespace sluice

#endif  // SLUICE_CONCURRENCY_LIMITER_H_
