// Internal: ConcurrencyLimiter leases in a shared-memory region (host scope).
//
// Each key owns `max_in_flight` lease pairs [token, expires_at] in a SharedTable; [0, 0] is free.
// Taking a free or expired pair, releasing it and renewing it are each one 16-byte CAS on the
// pair, so the cap is structural (there are only max_in_flight pairs) and a holder killed at any
// instant simply leaves a pair that expires and is taken over. Tokens mix the process id, so a
// forked child never reuses its parent's.
#ifndef SLUICE_LIB_SHARED_LEASE_TABLE_H_
#define SLUICE_LIB_SHARED_LEASE_TABLE_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "stores/lease_store.h"
#include "stores/shared_table.h"

namespace sluice {
inline namespace v1 {
namespace internal {

class SharedLeaseTable final : public LeaseStore {
 public:
  static absl::StatusOr<std::unique_ptr<SharedLeaseTable>> Open(const std::string& name,
                                                                int64_t max_in_flight,
                                                                int64_t max_keys);

  Grant Acquire(const KeyDigest& d, int64_t max_in_flight, int64_t now,
                int64_t expires_at) override;
  bool Release(const KeyDigest& d, uint64_t lease_id, int64_t expires_at) override;
  bool Renew(const KeyDigest& d, uint64_t lease_id, int64_t expires_at,
             int64_t new_expires_at) override;
  int64_t InFlight(const KeyDigest& d, int64_t now) override;
  int64_t ReclaimExpired(int64_t now) override;

 private:
  SharedLeaseTable(std::unique_ptr<SharedTable> table, int64_t max_in_flight)
      : table_(std::move(table)), pairs_(max_in_flight) {}

  std::unique_ptr<SharedTable> table_;
  const int64_t pairs_;
};

}  // namespace internal
}  // namespace v1
}  // namespace sluice

#endif  // SLUICE_LIB_SHARED_LEASE_TABLE_H_
