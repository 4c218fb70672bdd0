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
#ifndef SLUICE_LIB_ADMISSION_GCRA_BACKEND_H_
#define SLUICE_LIB_ADMISSION_GCRA_BACKEND_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "admission/gcra.h"
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
  virtual absl::StatusOr<Decision> Admit(const KeyDigest& d, int64_t cost, int64_t now_nanos) = 0;
  // The same, started without blocking: ready at once unless a Redis reply is needed. Local
  // errors are returned; Redis's arrive in the Pending's status().
  virtual absl::StatusOr<PendingDecision> StartAdmit(const KeyDigest& d, int64_t cost,
                                                     int64_t now_nanos) = 0;
  // Admit's verdict alone (false on any error); may wait for Redis.
  virtual bool Allow(const KeyDigest& d, int64_t cost, int64_t now_nanos) = 0;
  // Allow without waiting: nullopt when only a Redis round trip could tell.
  virtual std::optional<bool> AllowWithoutWaiting(const KeyDigest& d, int64_t cost,
                                                  int64_t now_nanos) = 0;

  // LeakyBucket (one window): books `cost` unless its wait would exceed `max_wait_nanos`.
  virtual absl::StatusOr<Decision> Queue(const KeyDigest& d, int64_t cost, int64_t max_wait_nanos,
                                         int64_t now_nanos) = 0;
  virtual absl::StatusOr<PendingDecision> StartQueue(const KeyDigest& d, int64_t cost,
                                                     int64_t max_wait_nanos,
                                                     int64_t now_nanos) = 0;

  // TokenBudget: adds `delta` (a refund when negative) to every window, refusing nothing.
  virtual absl::StatusOr<Decision> Adjust(const KeyDigest& d, int64_t delta,
                                          int64_t now_nanos) = 0;
  virtual absl::StatusOr<PendingDecision> StartAdjust(const KeyDigest& d, int64_t delta,
                                                      int64_t now_nanos) = 0;

  // The balance without changing it: allowed iff one unit would pass every window now.
  virtual PendingDecision StartPeek(const KeyDigest& d, int64_t now_nanos) = 0;

  // Keys kept in this process or host (0 in Redis), and their memory.
  virtual int64_t DropIdle(int64_t now_nanos) = 0;
  virtual int64_t key_count() const = 0;
  virtual int64_t memory_bytes() const = 0;
  // Redis: decisions made by the failure mode; leased mode: decisions from a local lease, and
  // lease round trips. 0 elsewhere.
  virtual int64_t failure_mode_decisions() const { return 0; }
  virtual int64_t local_decisions() const { return 0; }
  virtual int64_t round_trips() const { return 0; }

 private:
  const std::vector<GcraWindow> windows_;
  const int64_t min_burst_;
  const Clock* const clock_;
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
