// Internal: the backends of a RateLimiter whose windows are sliding (WindowKind::kSliding), one
// per scope, behind GcraBackend's interface so that RateLimiter never asks which it has:
//
//   process       per key a ring of times (sliding_log.h) in a LockedTable   sliding_log_backend.cc
//   host          the same rings in a host region, one lock word per key     sliding_log_backend.cc
//                 that a dead holder's successor takes over (shared_key_lock.h)
//   Redis strict  one script per decision on a sorted set per key and window  redis_sliding.cc
//   Redis leased  refused: a lease of units is a token bucket, not a log
//
// GcraBackend's interface fits: RateLimiter calls Admit, StartAdmit, Allow, AllowWithoutWaiting,
// StartPeek and the key counts; Queue and Adjust (LeakyBucket, TokenBudget) return Internal,
// because OpenGcraBackend never builds a sliding backend for those objects (they refuse kSliding,
// naming windows[i].kind). A separate interface would have made RateLimiter branch on the kind;
// this way the kind, like the scope, is chosen once, in the factory.
#ifndef SLUICE_LIB_ADMISSION_SLIDING_LOG_BACKEND_H_
#define SLUICE_LIB_ADMISSION_SLIDING_LOG_BACKEND_H_

#include <cstdint>
#include <memory>
#include <vector>

#include "absl/status/statusor.h"
#include "admission/gcra_backend.h"
#include "admission/sliding_log.h"

namespace sluice {
inline namespace v1 {
namespace internal {

// What every sliding backend shares: the compiled windows for the cost checks, and no Queue or
// Adjust.
class SlidingBackendBase : public GcraBackend {
 public:
  using GcraBackend::GcraBackend;
  absl::StatusOr<Decision> Queue(const KeyDigest&, int64_t, int64_t, int64_t) override;
  absl::StatusOr<PendingDecision> StartQueue(const KeyDigest&, int64_t, int64_t,
                                             int64_t) override;
  absl::StatusOr<Decision> Adjust(const KeyDigest&, int64_t, int64_t,
                                  const KeyWindows*) override;
  absl::StatusOr<PendingDecision> StartAdjust(const KeyDigest&, int64_t, int64_t,
                                              const KeyWindows*) override;
};

// The backend for sliding windows in `spec.scope` (OpenGcraBackend calls it when every window is
// kSliding). InvalidArgument naming the field: a window's burst or limit (see
// CompileSlidingWindows), cluster.mode kLeased; a host region's errors.
absl::StatusOr<std::unique_ptr<GcraBackend>> OpenSlidingBackend(const GcraSpec& spec);

// Process scope, also the kLocal failure mode's stand-in in cluster scope. `compiled` are the
// same windows compiled as GCRA windows (for the objects' cost checks: burst == limit).
std::unique_ptr<GcraBackend> NewProcessSlidingBackend(std::vector<SlidingWindow> windows,
                                                      std::vector<GcraWindow> compiled,
                                                      int64_t max_keys, const Clock* clock);

// The int64 words a key takes in a host region: its lock word and its rings.
int64_t HostSlidingCells(const std::vector<SlidingWindow>& windows);

// Redis strict (redis_sliding.cc). `cluster` validated by the caller except for the windows.
absl::StatusOr<std::unique_ptr<GcraBackend>> NewRedisSlidingBackend(
    const GcraSpec& spec, std::vector<SlidingWindow> windows);

}  // namespace internal
}  // namespace v1
}  // namespace sluice

#endif  // SLUICE_LIB_ADMISSION_SLIDING_LOG_BACKEND_H_
