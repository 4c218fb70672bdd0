// Internal: leased cluster mode for RateLimiter (see docs/architecture.md, "Leased mode").
//
// A process leases up to `lease_units` units of a key from Redis in one round trip (charged there
// at once, on the server clock) and admits from that lease locally for at most `ttl`; what an
// exhausted or expired lease left unused is given back with the next lease request.
//
// THE BOUND. Over any interval of length t, all processes together admit at most
//     burst + floor((t + ttl) * limit / period)
// per key and window (T = period / limit below, one unit's emission interval).
//
// The give-back. A lease granted k units at server time g, and u of them went unused. The lease
// script credits back, per window,
//     credit = min(u*T, max(0, g + k*T - now))         (and the TAT never below now: "whole")
// i.e. only the part of the returned units that would still be ahead of now had the grant been
// charged to an empty bucket. The old script credited u*T whatever the time, so a lease that
// expired after the key refilled, given back after others had filled it again, handed them u
// units on top of a full burst (109 admitted within a millisecond against a bound of 101, with
// burst 100, u = 9).
//
// Proof that the credit is safe. Fix a window. Let C be the counterfactual run in which every
// grant charges only the units its holder used (at the grant time, as one charge). Write
// L(t) = max(TAT - t, 0) for how full a run is: a charge of c adds c*T, time drains it at rate 1
// down to 0. Let E = L_actual - L_C, and for each grant i not yet given back
//     r_i(t) = min(u_i*T, max(0, g_i + k_i*T - t)),        R = sum of r_i.
// Claim: E >= R >= 0 at all times. Initially both are 0.
//   * A grant adds k_i*T to L_actual and (k_i - u_i)*T to L_C: E grows by u_i*T, and R by
//     r_i(g_i) = u_i*T.
//   * Between events E falls only while L_C = 0 (then at rate 1). A positive r_i that is not yet
//     falling (t - g_i < (k_i - u_i)*T) implies L_C(t) >= (k_i - u_i)*T - (t - g_i) > 0. So while
//     E falls, every positive r_i falls at rate 1 too, and R falls at least as fast as E (or R
//     is 0 <= E).
//   * A give-back of grant j subtracts credit_j = r_j(now) <= R <= E from L_actual: no clamp at 0
//     is reached, E falls by exactly r_j, R by r_j.
// Hence L_actual >= L_C always. Each grant was admitted by the actual run, k_i*T + L_actual <=
// tolerance, so C's charge (k_i - u_i)*T + L_C <= tolerance was admitted too: C is a plain GCRA
// run, and its charges obey burst + floor(t * limit / period) over every interval. Every unit
// spent was charged in C at its grant time, at most `ttl` before the spend (the local expiry is
// counted from before the request was sent), which gives the bound. Other holders' strict
// admissions are charges like any other; nothing else decreases a TAT (a RateLimiter never
// refunds), so the argument covers any number of processes and hosts. The property test
// (tests/cpp/admission/cluster_leased_property_test.cc) checks the bound over random interleavings.
//
// The grant time is stored rounded down to the millisecond, which only lowers the credit.
//
// Two leases of one key in one process (two threads asked at once) are merged, and the merged
// lease is given back as if it were one grant at the earlier grant time g of k = the smaller of
// the two grants: credit = min(U*T, max(0, g + k*T - now)) for U unused in all. That is at most
// what the two grants could be credited separately, whichever of them the unused units are
// counted against: with D = max(0, g + k*T - now), no larger than either grant's own term,
// min(u1*T, D) + min(u2*T, D) >= min((u1 + u2)*T, D). So the proof holds for the merged lease
// (a give-back of two grants at once), with the spends split between the grants in any way that
// leaves each spend after its grant (the merged lease expires with the earlier one).
//
// Local state per key, two cells:
//   cell 0: [expiry ms since this object's epoch : 40 | refused : 1 | units left : 22], so taking
//           a unit is a single compare-and-swap (TryLocal, lock-free);
//   cell 1: [grant time, ms since the script epoch : 41 | units granted : 22], for the give-back.
// The two change together only under a per-key stripe mutex (Keep, StartLease), which TryLocal
// never needs: it only lowers cell 0's units.
// A key Redis refused is refused locally until its retry time (safe: it can only under-admit).

#ifndef SLUICE_LIB_LEASED_GCRA_H_
#define SLUICE_LIB_LEASED_GCRA_H_

#include <atomic>
#include <memory>
#include <mutex>

#include "sluice/internal/mutex.h"

#include "admission/redis_gcra.h"
#include "base/fork_hooks.h"
#include "stores/keyed_table.h"

namespace sluice {
inline namespace v1 {
namespace internal {

class LeasedGcra {
 public:
  static constexpr int64_t kMaxLeaseUnits = (int64_t{1} << 22) - 1;

  // REQUIRES: 1 <= lease_units <= kMaxLeaseUnits, 1 ms <= ttl <= 366 days. `cluster` outlives
  // this.
  LeasedGcra(ClusterGcra* cluster, int64_t lease_units, absl::Duration ttl, int64_t limit,
             int64_t window_nanos, const Clock* clock, int64_t max_keys);

  // Admits `cost` from this process's lease of `d` if it holds enough unexpired units.
  bool TryLocal(const KeyDigest& d, int64_t cost, Decision* out);

  // A lease request for `d` (returning the leftovers of the current lease). `ticket` remembers
  // what FinishLease needs.
  struct Ticket {
    int64_t sent_ms = 0;
    int64_t want = 0;
  };
  std::shared_ptr<PendingReply> StartLease(const KeyDigest& d, int64_t cost, bool want_fd,
                                           Ticket* ticket);
  // Takes `cost` from the granted lease and keeps the rest locally; or applies the failure mode
  // (a transport failure); or returns the error (see ClusterGcra::Finish).
  absl::StatusOr<Decision> FinishLease(const KeyDigest& d, int64_t cost, const Ticket& ticket,
                                       const absl::StatusOr<std::vector<int64_t>>& reply);

  // TryLocal, else a lease round trip. Thread-safe.
  absl::StatusOr<Decision> Decide(const KeyDigest& d, int64_t cost);

  int64_t local_decisions() const { return local_.load(); }
  int64_t leases() const { return leases_.load(); }

  ~LeasedGcra();

 private:
  static constexpr int kStripes = 64;

  // fork(): a child must not spend its parent's leases (each copy would be spent once per
  // process, over-admitting), so the child drops every key of its table. The stripes are held
  // across the fork (no lease is half installed) and the child's are fresh.
  void LockForFork();
  void UnlockAfterFork(bool in_child);

  int64_t NowMs() const;
  Mutex& StripeOf(const KeyDigest& d) { return stripes_[d.lo % kStripes]; }
  // Installs a granted lease of `units` left (of `granted`, at server time `grant_ms`).
  void Keep(const KeyDigest& d, int64_t units, int64_t granted, int64_t grant_ms,
            int64_t expires_ms);
  // Remembers that Redis has no unit for `d` until `until_ms`.
  void RefuseUntil(const KeyDigest& d, int64_t until_ms);
  // Visits the cells of `d` (inserting the key), `fn(cells)`.
  template <typename Fn>
  void VisitCells(const KeyDigest& d, Fn&& fn);

  ClusterGcra* const cluster_;
  const int64_t lease_units_;
  const int64_t ttl_ms_;
  const int64_t limit_;
  const int64_t window_nanos_;
  const Clock* const clock_;
  const int64_t epoch_nanos_;
  const std::unique_ptr<KeyedTable> table_;
  std::unique_ptr<Mutex[]> stripes_ = std::make_unique<Mutex[]>(kStripes);
  std::atomic<int64_t> local_{0}, leases_{0};
  std::unique_ptr<ForkHooks> fork_hooks_;  // registered last, unregistered first
};

}  // namespace internal
}  // namespace v1
}  // namespace sluice

#endif  // SLUICE_LIB_LEASED_GCRA_H_
