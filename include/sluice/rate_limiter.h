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
