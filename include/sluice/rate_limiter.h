// -----------------------------------------------------------------------------
// File: sluice/rate_limiter.h
// -----------------------------------------------------------------------------
//
// `RateLimiter` admits or refuses requests per key (tenant, app, API key, user, endpoint, or any
// composite string you build from them) against one or several windows at once: 10 per second
// *and* 1000 per hour, say. A request passes only if every window has room, and a refusal
// charges no window.
//
// The algorithm is GCRA (see sluice/window.h for the exact bound it enforces): one 64-bit word of
// state per key and window, updated with a compare-and-swap; no background thread, no timer, no
// lock on the decision path.
//
// Memory is bounded. Keys live in a table of 128-bit key digests that grows with the number of
// live keys. A key whose windows are all whole again ("idle") is indistinguishable from a key
// never seen, so dropping it loses nothing; the table drops idle keys whenever it needs room.
// `max_keys` bounds the live (non-idle) keys: when that many keys are all mid-window, a request
// for a *new* key gets `absl::ResourceExhaustedError` (fail closed, never silent over-admission),
// while known keys keep working.
//
// Example:
//
//   sluice::RateLimiter::Options options;
//   options.windows = {sluice::Window::PerSecond(10, /*burst=*/20), sluice::Window::PerHour(1000)};
//   absl::StatusOr<std::unique_ptr<sluice::RateLimiter>> limiter =
//       sluice::RateLimiter::Create(options);
//   if (!limiter.ok()) return limiter.status();          // names the bad field
//
//   absl::StatusOr<sluice::Decision> d = (*limiter)->TryAcquire("tenant-42:app-7");
//   if (d.ok() && !d->allowed) return TooManyRequests(d->retry_after());
//
// Thread-safety: a RateLimiter is safe for concurrent use by any number of threads without
// external synchronization. Decisions on one key are linearizable with respect to admission: the
// bound holds whatever the interleaving. With several windows a request that passes the first
// window and fails a later one holds the first window's charge for a few nanoseconds before it is
// returned; a concurrent request can be refused in that instant, never wrongly admitted.
//
// Refunds. When a request passed this limiter but a later check refused it (another rule, a
// budget, a concurrency cap: "a request passes only if all pass"), `Refund` gives back exactly
// the charge the admission made, using the Decision it returned:
//
//   absl::StatusOr<sluice::Decision> d = limiter->TryAcquire(key, cost);
//   if (d.ok() && d->allowed && !budget_ok) (void)limiter->Refund(key, cost, *d);
//
// Per-key limits. One limiter serves keys with different limits (plans, tiers, per-app caps):
// compile each set of windows once with CompileKeyLimits and pass it with the call (see
// sluice/key_limits.h for the rules and the bound while a key's limits change):
//
//   sluice::KeyLimits pro = *limiter->CompileKeyLimits({sluice::Window::PerSecond(50, 100),
//                                                       sluice::Window::PerHour(20000)});
//   absl::StatusOr<sluice::Decision> d = limiter->TryAcquire(app_id, 1, pro);

#ifndef SLUICE_RATE_LIMITER_H_
#define SLUICE_RATE_LIMITER_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "sluice/clock.h"
#include "sluice/cluster.h"
#include "sluice/scope.h"
#include "sluice/internal/key_digest.h"
#include "sluice/decision.h"
#include "sluice/key_limits.h"
#include "sluice/pending.h"
#include "sluice/window.h"

namespace sluice {
inline namespace v1 {

namespace internal {
class GcraBackend;
}  // namespace internal

// sluice::RateLimiter
class RateLimiter {
 public:
  // The scope options (max_keys, shared_region, cluster) are ScopeOptions's: sluice/scope.h.
  struct Options : ScopeOptions {
    // The windows every request must pass, 1 to 8 of them. Required.
    std::vector<Window> windows;
    // Scope notes: memory is about 48 bytes per live key (plus 8 per extra window); a host region
    // takes SharedRegionBytesForWindows(windows.size(), max_keys) bytes. Sliding windows
    // (WindowKind::kSliding, sluice/window.h) keep 8 bytes per unit of limit per key, plus 8 per
    // window, under a mutex per shard of keys (a lock word per key in a host region, which takes
    // SharedRegionBytesForSlidingWindows(windows, max_keys) bytes, at most
    // kMaxSlidingRegionBytes: set max_keys to the keys you expect); in cluster scope a sorted set
    // per key and window, strict mode only. In cluster scope,
    // decisions take one round trip and use the Redis server's clock (the limiter's clock is used
    // only by the kLocal failure mode); in leased mode (ClusterMode::kLeased) most decisions are
    // local, and the bound becomes burst + floor((t + lease_ttl) * limit / period) over any
    // interval t (sluice/cluster.h).
  };

  // Validates `options` (errors name the field, e.g. "windows[1].limit must be > 0, got 0")
  // and builds a limiter reading `clock`, which must outlive it. Default: Clock::Steady().
  static absl::StatusOr<std::unique_ptr<RateLimiter>> Create(
      const Options& options, const Clock* clock = Clock::Steady());

  RateLimiter(const RateLimiter&) = delete;
  RateLimiter& operator=(const RateLimiter&) = delete;
  ~RateLimiter();

  // Takes `cost` units from every window of `key`, or none if any window lacks room.
  // Errors: InvalidArgument if cost < 1 or cost exceeds some window's burst (it could never be
  // allowed); ResourceExhausted if `key` is new and `max_keys` live keys leave no room. In
  // cluster scope, a configuration error of the Redis deployment (PermissionDenied,
  // FailedPrecondition, ResourceExhausted, Internal: see sluice/redis_store.h, "Errors"); while
  // Redis is merely unreachable, the failure mode decides instead. Thread-safe.
  absl::StatusOr<Decision> TryAcquire(std::string_view key, int64_t cost = 1);

  // As TryAcquire, at an explicit time on the limiter's clock (replays, simulations, tests).
  absl::StatusOr<Decision> TryAcquireAt(std::string_view key, int64_t cost, int64_t now_nanos);

  // The fast path: the same decision without building a Decision. Errors become `false`.
  // In cluster scope it may wait for Redis (see AllowWithoutWaiting).
  bool Allow(std::string_view key, int64_t cost = 1);

  // Allow, when it can decide without waiting for Redis: always in process and host scope, and
  // in leased cluster mode when this process's lease (or its memory of a refusal) covers the
  // request. std::nullopt when only a round trip can decide: call Start(). Errors become
  // `false`. Event-loop servers call this first and fall back to Start(). Thread-safe.
  std::optional<bool> AllowWithoutWaiting(std::string_view key, int64_t cost = 1);

  // Starts the decision and returns at once. In process and host scope it is already decided; in
  // cluster scope the reply is on its way, and `PendingDecision::fd()` becomes readable when it
  // arrives, so an event loop (gevent, asyncio) can wait for it without blocking. Errors as for
  // TryAcquire: argument errors at once, Redis configuration errors in PendingDecision::status()
  // (the decision is then a refusal). Thread-safe.
  absl::StatusOr<PendingDecision> Start(std::string_view key, int64_t cost = 1);

  // What `key` has left without taking anything: `allowed` says whether a request of cost 1
  // would pass every window now, `remaining` what the binding window has left, and, when it
  // would not pass, `retry_after` when it would (the binding window is then the one that makes
  // it wait longest). A key never seen reports every window whole. In cluster scope a round trip
  // (Redis's view, whatever the mode); a configuration error gives a refusal (StartPeek reports
  // it). Thread-safe.
  Decision Peek(std::string_view key);
  // Peek, started: returns at once (in cluster scope the reply is on its way; see
  // sluice/pending.h), so an event loop can wait for it cooperatively. Thread-safe.
  PendingDecision StartPeek(std::string_view key);

  // ---- Refunds ---------------------------------------------------------------------------------
  //
  // Gives back the charge of `cost` that `admitted` (an allowed Decision of TryAcquire,
  // TryAcquireAt or Start on this limiter, for `key`, with that cost) made, after a later check
  // refused the request. Call it at most once per admission, with the same KeyLimits if the
  // admission had some. Exactness:
  //   * GCRA (process, host, cluster strict): each window's TAT moves back by what is left of the
  //     charge, cost * (period / limit) minus the time since the admission. Refunded at once
  //     (the usual case) that is the whole charge: the key is as if the request never came.
  //     Later, only the part that has not refilled on its own: the admissions that were not
  //     refunded then still obey the window's bound (burst + floor(t * limit / period) over any
  //     interval t), which giving back the whole charge would not guarantee once others were
  //     admitted in between.
  //   * sliding (process, host, cluster strict): the `cost` entries that admission recorded
  //     (entries of one time are interchangeable), not the latest ones, so the key is never
  //     admitted more than `limit` in any window counting only the admissions not refunded.
  //   * leased cluster mode, and decisions the cluster failure mode made locally: nothing is
  //     given back (their decisions carry Decision::kNoCharge), which only refuses more.
  // In cluster scope the refund takes a round trip; if Redis cannot be reached it is dropped
  // (conservative) and OK is returned. Errors: InvalidArgument if `admitted` was refused, or
  // cost < 1 or above a window's burst; for the KeyLimits overload, as for TryAcquire; Redis
  // configuration errors. Thread-safe.
  absl::Status Refund(std::string_view key, int64_t cost, const Decision& admitted);
  absl::Status Refund(std::string_view key, int64_t cost, const Decision& admitted,
                      const KeyLimits& limits);
  // As Refund, at an explicit time on the limiter's clock (process and host scope).
  absl::Status RefundAt(std::string_view key, int64_t cost, const Decision& admitted,
                        int64_t now_nanos);

  // ---- Per-key limits ---------------------------------------------------------------------------
  //
  // Compiles `windows` to replace this limiter's Options::windows in the calls that take them:
  // as many, of the same kinds; GCRA windows at this limiter's scale per window (exact() false
  // when that rounds an emission interval up); a sliding window's limit at most the
  // Options::windows[i].limit (the per-key log's capacity), any period; in cluster scope whole
  // microseconds, strict mode only (FailedPrecondition naming cluster.mode in leased mode).
  // Errors (InvalidArgument) name windows[i].<field>. Cheap to keep and copy. Thread-safe.
  absl::StatusOr<KeyLimits> CompileKeyLimits(const std::vector<Window>& windows) const;

  // TryAcquire, TryAcquireAt, Allow, AllowWithoutWaiting, Start, Peek and StartPeek against
  // `limits` instead of Options::windows, on the key's same state. Errors as without limits
  // (cost against the limits' bursts), and InvalidArgument if `limits` are empty or were
  // compiled by another object (Allow: false). In cluster scope the failure mode decides
  // against the Options::windows' local share. Thread-safe.
  absl::StatusOr<Decision> TryAcquire(std::string_view key, int64_t cost, const KeyLimits& limits);
  absl::StatusOr<Decision> TryAcquireAt(std::string_view key, int64_t cost, int64_t now_nanos,
                                        const KeyLimits& limits);
  bool Allow(std::string_view key, int64_t cost, const KeyLimits& limits);
  std::optional<bool> AllowWithoutWaiting(std::string_view key, int64_t cost,
                                          const KeyLimits& limits);
  absl::StatusOr<PendingDecision> Start(std::string_view key, int64_t cost,
                                        const KeyLimits& limits);
  absl::StatusOr<Decision> Peek(std::string_view key, const KeyLimits& limits);
  absl::StatusOr<PendingDecision> StartPeek(std::string_view key, const KeyLimits& limits);

  // Drops every idle key now rather than when room is next needed; returns how many were
  // dropped. Thread-safe; briefly excludes deciders from each shard in turn.
  int64_t DropIdleKeys();

  // Keys currently held in the table (idle ones included until dropped).
  int64_t key_count() const;
  // Bytes held by the key table.
  int64_t memory_bytes() const;
  // Cluster scope: decisions made by the failure mode because Redis did not answer.
  int64_t failure_mode_decisions() const;
  // Leased cluster mode: decisions made from a local lease, and lease round trips.
  int64_t leased_local_decisions() const;
  int64_t lease_round_trips() const;
  const Options& options() const { return options_; }

 private:
  RateLimiter(const Options& options, std::unique_ptr<internal::GcraBackend> backend);
  // The backend's view of `limits`, or why they cannot be used.
  absl::StatusOr<const internal::KeyWindows*> Check(const KeyLimits& limits) const;
  absl::Status RefundWith(std::string_view key, int64_t cost, const Decision& admitted,
                          int64_t now_nanos, const internal::KeyWindows* limits);

  Options options_;
  std::unique_ptr<internal::GcraBackend> backend_;  // the scope: process, host, Redis
};

// The bytes of /dev/shm the region of a host-scope RateLimiter with these sliding windows takes
// for `max_keys` keys, header included: per key a lock word and, per window, 1 + limit words,
// rounded up to an even count with the key's 2-word digest, at a load of at most 3/4. (For GCRA
// windows see SharedRegionBytesForWindows in sluice/shared_region.h.) InvalidArgument, naming
// the field, for the windows Create refuses, a window that is not kSliding, or a max_keys out
// of 1..kMaxSharedRegionKeys. Thread-safe.
absl::StatusOr<int64_t> SharedRegionBytesForSlidingWindows(const std::vector<Window>& windows,
                                                           int64_t max_keys);

// The largest host region a RateLimiter with sliding windows creates (1 GiB): regions are
// reserved whole, and the default max_keys would otherwise reserve gigabytes per limiter.
inline constexpr int64_t kMaxSlidingRegionBytes = int64_t{1} << 30;

}  // namespace v1
}  // namespace sluice

#endif  // SLUICE_RATE_LIMITER_H_
