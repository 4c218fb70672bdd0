// Internal: where a ConcurrencyLimiter keeps its leases: in this process (LeaseTable) or in a
// shared-memory region for every process of the host (SharedLeaseTable).
#ifndef SLUICE_LIB_LEASE_STORE_H_
#define SLUICE_LIB_LEASE_STORE_H_

#include <cstdint>

#include "sluice/internal/key_digest.h"

namespace sluice {
inline namespace v1 {
namespace internal {

class LeaseStore {
 public:
  struct Grant {
    uint64_t lease_id = 0;        // 0: refused
    bool table_full = false;      // refused because the key is new and there is no room for it
    int64_t in_flight = 0;        // unexpired leases held for the key after this call
    int64_t earliest_expiry = 0;  // refused: the soonest a held lease ends
  };

  virtual ~LeaseStore() = default;

  // Grants a lease ending at `expires_at` if fewer than `max_in_flight` unexpired leases are held
  // for `d`; an expired lease's slot is free for the taking.
  virtual Grant Acquire(const KeyDigest& d, int64_t max_in_flight, int64_t now,
                        int64_t expires_at) = 0;
  // True if the lease (granted or last renewed to end at `expires_at`) was still held; it is gone
  // either way.
  virtual bool Release(const KeyDigest& d, uint64_t lease_id, int64_t expires_at) = 0;
  // Moves the lease's end from `expires_at` to `new_expires_at`. False if it was reclaimed.
  virtual bool Renew(const KeyDigest& d, uint64_t lease_id, int64_t expires_at,
                     int64_t new_expires_at) = 0;
  virtual int64_t InFlight(const KeyDigest& d, int64_t now) = 0;
  virtual int64_t ReclaimExpired(int64_t now) = 0;
};

}  // namespace internal
}  // namespace v1
}  // namespace sluice

#endif  // SLUICE_LIB_LEASE_STORE_H_
