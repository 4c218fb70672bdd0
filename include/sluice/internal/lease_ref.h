// Internal: which lease a ConcurrencyLimiter::Permit holds, as the limiter's lease backend knows
// it (lib/admission/lease_backend.h), and what an acquire got. Not for callers.
#ifndef SLUICE_INTERNAL_LEASE_REF_H_
#define SLUICE_INTERNAL_LEASE_REF_H_

#include <cstdint>

#include "absl/status/status.h"
#include "sluice/decision.h"
#include "sluice/internal/key_digest.h"

namespace sluice {
inline namespace v1 {
namespace internal {

struct LeaseRef {
  // Where the slot is held.
  enum class Holder : uint8_t {
    kTable,     // a lease table: this process's, the host's region, or the kLocal failure mode's
    kRedis,     // a lease in Redis (cluster scope)
    kUnbacked,  // nowhere: admitted by the kAllow failure mode
  };
  Holder holder = Holder::kTable;
  KeyDigest digest;
  uint64_t lease_id = 0;  // 0: no lease (a refusal)
  int64_t expires_at_nanos = 0;  // on the limiter's clock (Redis: a local estimate)
};

// What an acquire got: a lease (decision.allowed, lease.lease_id != 0), or a refusal whose
// `error` is the configuration error Redis answered, if that is why. A Permit holds one, which
// the backend fills in place (no copy between the table and the caller).
struct LeaseGrant {
  Decision decision;
  LeaseRef lease;
  absl::Status error;
};

}  // namespace internal
}  // namespace v1
}  // namespace sluice

#endif  // SLUICE_INTERNAL_LEASE_REF_H_
