// Internal: leased cluster mode for RateLimiter (see docs/architecture.md, "Leased mode").
//
// A process leases up to `lease_units` units of a key from Redis in one round trip (charged there
// at once, on the server clock) and admits from that lease locally for at most `ttl`; the unused
// rest of an exhausted or expired lease is given back with the next lease request. Every local
// admission happens within `ttl` of a charge that obeyed the global bound, so over any interval t:
// admitted <= burst + floor((t + ttl) * limit / period); with ttl = period / 100 the overshoot is
// at most 1% of the limit. Leases never cross processes, so a process that stops holding units
// only under-admits until they would have refilled.
//
// Local state per key: one int64 packing [expiry in ms since this object's epoch : 40 bits |
// refused : 1 bit | units left : 22 bits], so taking a unit is a single compare-and-swap. A key
// Redis refused is refused locally until its retry time (safe: it can only under-admit).

#ifndef SLUICE_LIB_LEASED_GCRA_H_
#define SLUICE_LIB_LEASED_GCRA_H_

#include <atomic>
#include <memory>

#include "cluster_gcra.h"
#include "fork_hooks.h"
#include "keyed_table.h"

namespace sluice {
inline namespace v1 {
namespace internal {

class LeasedGcra {
 public:
  static constexpr int64_t kMaxLeaseUnits = (int64_t{1} << 22) - 1;

  // REQUIRES: 1 <= lease_units <= kMaxLeaseUnits, ttl >= 1 ms. `cluster` outlives this.
  LeasedGcra(ClusterGcra* cluster, int64_t lease_units, absl::Duration ttl, int64_t limit,
             int64_t window_nanos, const Clock* clock, int64_t max_keys);

  // Admits `cost` from this process's lease of `d` if it holds enough unexpired units.
  bool TryLocal(const KeyDigest& d, int64_t cost, Decision* out);

  // A lease request for `d` (returning the leftovers of the current lease). `ticket` remembers
  // what FinishLease needs.
  struct Ticket {
    int64_t sent_ms = 0;
  };
  std::shared_ptr<PendingReply> StartLease(const KeyDigest& d, int64_t cost, bool want_fd,
                                           Ticket* ticket);
  // Takes `cost` from the granted lease and keeps the rest locally; or applies the failure mode.
  Decision FinishLease(const KeyDigest& d, int64_t cost, const Ticket& ticket,
                       const absl::StatusOr<std::vector<int64_t>>& reply);

  // TryLocal, else a lease round trip. Thread-safe.
  Decision Decide(const KeyDigest& d, int64_t cost);

  int64_t local_decisions() const { return local_.load(); }
  int64_t leases() const { return leases_.load(); }

  ~LeasedGcra();

 private:
  // fork(): a child must not spend its parent's leases (each copy would be spent once per
  // process, over-admitting), so the child's hook gives it an empty table. The old one is
  // abandoned, not destroyed: a parent thread may have held one of its locks.
  void ForgetLeasesInForkChild();


  int64_t NowMs() const;
  void Keep(const KeyDigest& d, int64_t units, int64_t expires_ms);
  // Remembers that Redis has no unit for `d` until `until_ms`.
  void RefuseUntil(const KeyDigest& d, int64_t until_ms);

  ClusterGcra* const cluster_;
  const int64_t lease_units_;
  const int64_t ttl_ms_;
  const int64_t limit_;
  const int64_t window_nanos_;
  const Clock* const clock_;
  const int64_t epoch_nanos_;
  const int64_t max_keys_;
  std::unique_ptr<KeyedTable> table_;
  std::atomic<int64_t> local_{0}, leases_{0};
  std::unique_ptr<ForkHooks> fork_hooks_;  // registered last, unregistered first
};

}  // namespace internal
}  // namespace v1
}  // namespace sluice

#endif  // SLUICE_LIB_LEASED_GCRA_H_
