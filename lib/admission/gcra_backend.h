// Internal: where the GCRA cells of RateLimiter, LeakyBucket and TokenBudget live, behind one
// interface. The public objects validate their arguments, digest the key and call the backend;
// they never ask which scope they are in.
//
//   process       ProcessGcra (cells in this process)                    gcra.cc
//   host          HostGcra (cells in a shared-memory region)             gcra.cc
//   Redis strict  one EVALSHA per decision (ClusterGcra)                 redis_gcra_backend.cc
//   Redis leased  local decisions from units leased in Redis (LeasedGcra) redis_gcra_backend.cc
//
// OpenGcraBackend is the one factory: it validates the scope (ScopeOptions) and builds the
// backend, so each object's Create() only compiles its windows.
//
// Times: `now_nanos` is the caller's clock reading (its *At method, or its clock). The Redis
// backends ignore it: the Redis server's clock decides.
//
// Per-key limits: the deciding methods take `limits` (KeyWindows, compiled by this backend's
// CompileKeyWindows), nullptr for the object's own windows; the callers check that `limits` are
// this backend's (owner == id()) and that the cost fits them.
#ifndef SLUICE_LIB_ADMISSION_GCRA_BACKEND_H_
#define SLUICE_LIB_ADMISSION_GCRA_BACKEND_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "admission/gcra.h"
#include "admission/key_windows.h"
#include "sluice/clock.h"
#include "sluice/decision.h"
#include "sluice/internal/key_digest.h"
#include "sluice/pending.h"
#include "sluice/scope.h"
#include "sluice/window.h"

namespace sluice {
inline namespace v1 {
namespace internal {

class GcraBackend {
 public:
  // REQUIRES: 1 <= windows.size() <= kMaxGcraWindows, clock != nullptr.
  GcraBackend(std::vector<GcraWindow> windows, const Clock* clock);
  virtual ~GcraBackend() = default;

  // The object's windows, compiled (for its cost checks), and its clock.
  const std::vector<GcraWindow>& windows() const { return windows_; }
  // The smallest burst of any window: the largest cost that can ever be admitted.
  int64_t min_burst() const { return min_burst_; }
  const Clock& clock() const { return *clock_; }

  // Takes `cost` from every window or from none (RateLimiter, TokenBudget::TryReserve).
  // REQUIRES: 0 <= cost <= every window's burst. Errors: a full table (ResourceExhausted), a
  // configuration error Redis answered.
  // Allowed decisions carry charged_at_nanos for Refund (kNoCharge where Refund cannot use it).
  virtual absl::StatusOr<Decision> Admit(const KeyDigest& d, int64_t cost, int64_t now_nanos,
                                         const KeyWindows* limits = nullptr) = 0;
  // The same, started without blocking: ready at once unless a Redis reply is needed. Local
  // errors are returned; Redis's arrive in the Pending's status().
  virtual absl::StatusOr<PendingDecision> StartAdmit(const KeyDigest& d, int64_t cost,
                                                     int64_t now_nanos,
                                                     const KeyWindows* limits = nullptr) = 0;
  // Admit's verdict alone (false on any error); may wait for Redis.
  virtual bool Allow(const KeyDigest& d, int64_t cost, int64_t now_nanos,
                     const KeyWindows* limits = nullptr) = 0;
  // Allow without waiting: nullopt when only a Redis round trip could tell.
  virtual std::optional<bool> AllowWithoutWaiting(const KeyDigest& d, int64_t cost,
                                                  int64_t now_nanos,
                                                  const KeyWindows* limits = nullptr) = 0;

  // Gives back the charge of `cost` that Admit or Queue recorded at `charged_at_nanos` (its
  // decision's), against the same `limits`. GCRA: only the part of the charge that has not
  // drained on its own since then (so the state stays at or above that of the admissions that
  // were not refunded: see gcra.h); sliding: the `cost` entries recorded at that time. A key
  // never seen or already whole: nothing to do. Never refuses; errors are Redis's.
  virtual absl::Status Refund(const KeyDigest& d, int64_t cost, int64_t charged_at_nanos,
                              int64_t now_nanos, const KeyWindows* limits = nullptr) = 0;

  // LeakyBucket (one window): books `cost` unless its wait would exceed `max_wait_nanos`.
  virtual absl::StatusOr<Decision> Queue(const KeyDigest& d, int64_t cost, int64_t max_wait_nanos,
                                         int64_t now_nanos) = 0;
  virtual absl::StatusOr<PendingDecision> StartQueue(const KeyDigest& d, int64_t cost,
                                                     int64_t max_wait_nanos,
                                                     int64_t now_nanos) = 0;

  // TokenBudget: adds `delta` (a refund when negative) to every window, refusing nothing.
  virtual absl::StatusOr<Decision> Adjust(const KeyDigest& d, int64_t delta, int64_t now_nanos,
                                          const KeyWindows* limits = nullptr) = 0;
  virtual absl::StatusOr<PendingDecision> StartAdjust(const KeyDigest& d, int64_t delta,
                                                      int64_t now_nanos,
                                                      const KeyWindows* limits = nullptr) = 0;

  // The balance without changing it: allowed iff one unit would pass every window now.
  virtual PendingDecision StartPeek(const KeyDigest& d, int64_t now_nanos,
                                    const KeyWindows* limits = nullptr) = 0;

  // Compiles per-key `windows` for this backend (see sluice/key_limits.h for the rules);
  // `object_windows` are the object's Options::windows. Errors name windows[i].<field>.
  absl::StatusOr<std::shared_ptr<const KeyWindows>> CompileKeyWindows(
      absl::string_view object, const std::vector<Window>& object_windows,
      const std::vector<Window>& windows) const;
  // This backend's identity, for KeyWindows::owner: unique in the process.
  uint64_t id() const { return id_; }

  // Keys kept in this process or host (0 in Redis), and their memory.
  virtual int64_t DropIdle(int64_t now_nanos) = 0;
  virtual int64_t key_count() const = 0;
  virtual int64_t memory_bytes() const = 0;
  // Redis: decisions made by the failure mode; leased mode: decisions from a local lease, and
  // lease round trips. 0 elsewhere.
  virtual int64_t failure_mode_decisions() const { return 0; }
  virtual int64_t local_decisions() const { return 0; }
  virtual int64_t round_trips() const { return 0; }

 protected:
  // The scope's part of CompileKeyWindows: Redis formats its arguments, leased mode refuses.
  virtual absl::Status CompileForScope(absl::string_view /*object*/, KeyWindows* /*k*/) const {
    return absl::OkStatus();
  }

 private:
  const std::vector<GcraWindow> windows_;
  const int64_t min_burst_;
  const Clock* const clock_;
  const uint64_t id_;
};

// What OpenGcraBackend needs to know about the object it serves.
struct GcraSpec {
  absl::string_view object;               // "sluice.RateLimiter", for errors
  std::vector<Window> windows;             // as the caller gave them (Redis compiles its own)
  std::vector<GcraWindow> compiled;        // CompileWindow's
  const ScopeOptions* scope = nullptr;     // max_keys, shared_region, cluster
  const Clock* clock = nullptr;
  // Why leased mode is refused ("a schedule cannot be leased"), or empty if it is allowed.
  absl::string_view no_lease_reason;
  // Whether the object takes sliding windows (WindowKind::kSliding): only RateLimiter does.
  bool sliding_allowed = false;
};

// The backend for `spec.scope`: process (no shared_region, no cluster store), host
// (shared_region), Redis strict or leased (cluster.store; cluster.mode); for sliding windows
// (every window kSliding) the sliding backend of that scope (sliding_log_backend.h).
// InvalidArgument naming the field for windows of mixed kinds, sliding windows where the object
// refuses them (windows[i].kind), a bad scope (both scopes set, bad cluster options, leased mode refused or its
// lease out of range); a host region's errors (see sluice/shared_region.h).
absl::StatusOr<std::unique_ptr<GcraBackend>> OpenGcraBackend(const GcraSpec& spec);

// The implementations, for OpenGcraBackend (gcra.cc, redis_gcra_backend.cc).
std::unique_ptr<GcraBackend> NewProcessGcraBackend(std::vector<GcraWindow> windows,
                                                   int64_t max_keys, const Clock* clock);
std::unique_ptr<GcraBackend> NewHostGcraBackend(std::vector<GcraWindow> windows,
                                                std::unique_ptr<SharedTable> table,
                                                const Clock* clock);
class ClusterGcra;
std::unique_ptr<GcraBackend> NewRedisGcraBackend(std::vector<GcraWindow> windows,
                                                 const Clock* clock,
                                                 std::unique_ptr<ClusterGcra> redis);
// REQUIRES: 1 <= lease_units <= LeasedGcra::kMaxLeaseUnits, 1 ms <= ttl <= first's period.
std::unique_ptr<GcraBackend> NewLeasedGcraBackend(std::vector<GcraWindow> windows,
                                                  const Clock* clock,
                                                  std::unique_ptr<ClusterGcra> redis,
                                                  int64_t lease_units, absl::Duration ttl,
                                                  int64_t max_keys);

}  // namespace internal
}  // namespace v1
}  // namespace sluice

#endif  // SLUICE_LIB_ADMISSION_GCRA_BACKEND_H_
