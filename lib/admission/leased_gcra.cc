#include "admission/leased_gcra.h"

#include <algorithm>

#include "stores/redis_errors.h"

namespace sluice {
inline namespace v1 {
namespace internal {

namespace {
// Cell 0: [expiry ms : 40 | refused : 1 | units : 22]. "Refused" means Redis had no unit for this
// key until `expiry`: refusing locally until then is safe (it can only under-admit) and saves a
// round trip per refusal while a key is over its limit.
constexpr int kUnitBits = 22;
constexpr int64_t kUnitMask = (int64_t{1} << kUnitBits) - 1;
constexpr int64_t kRefusedBit = int64_t{1} << kUnitBits;
constexpr int kExpiryShift = kUnitBits + 1;

inline int64_t Pack(int64_t expires_ms, int64_t units) { return (expires_ms << kExpiryShift) | units; }
inline int64_t PackRefused(int64_t until_ms) { return (until_ms << kExpiryShift) | kRefusedBit; }
inline int64_t Units(int64_t word) { return word & kUnitMask; }
inline bool Refused(int64_t word) { return (word & kRefusedBit) != 0; }
inline int64_t Expiry(int64_t word) { return word >> kExpiryShift; }

// Cell 1: [grant ms since the script epoch : 41 | units granted : 22].
inline int64_t PackGrant(int64_t grant_ms, int64_t granted) {
  return (grant_ms << kUnitBits) | granted;
}
inline int64_t GrantMs(int64_t word) { return word >> kUnitBits; }
inline int64_t Granted(int64_t word) { return word & kUnitMask; }
constexpr int64_t kMaxGrantMs = (int64_t{1} << 41) - 1;

inline std::atomic_ref<int64_t> Cell(int64_t* p) { return std::atomic_ref<int64_t>(*p); }
}  // namespace

LeasedGcra::LeasedGcra(ClusterGcra* cluster, int64_t lease_units, absl::Duration ttl,
                       int64_t limit, int64_t window_nanos, const Clock* clock, int64_t max_keys)
    : cluster_(cluster),
      lease_units_(lease_units),
      ttl_ms_(std::max<int64_t>(1, absl::ToInt64Milliseconds(ttl))),
      limit_(limit),
      window_nanos_(window_nanos),
      clock_(clock),
      epoch_nanos_(clock->NowNanos()),
      table_(std::make_unique<KeyedTable>(2, max_keys, /*fresh_cell=*/0)),
      fork_hooks_(std::make_unique<ForkHooks>([this] { LockForFork(); },
                                              [this] { UnlockAfterFork(false); },
                                              [this] { UnlockAfterFork(true); })) {}

LeasedGcra::~LeasedGcra() { fork_hooks_.reset(); }

void LeasedGcra::LockForFork() {
  for (int i = 0; i < kStripes; ++i) stripes_[i].lock();
}

void LeasedGcra::UnlockAfterFork(bool in_child) {
  if (in_child) {
    // The table's own hook (registered before ours) has made it usable: drop every lease.
    (void)table_->DropIdle([](const int64_t*) { return true; });
  }
  for (int i = kStripes - 1; i >= 0; --i) {
    if (in_child) {
      stripes_[i].ResetInForkChild();
    } else {
      stripes_[i].unlock();
    }
  }
}

int64_t LeasedGcra::NowMs() const { return (clock_->NowNanos() - epoch_nanos_) / 1'000'000; }

template <typename Fn>
void LeasedGcra::VisitCells(const KeyDigest& d, Fn&& fn) {
  const int64_t now = NowMs();
  auto idle = [now](const int64_t* cells) { return Expiry(cells[0]) <= now; };
  (void)table_->Visit(d, clock_->NowNanos(), idle, std::forward<Fn>(fn));
}

bool LeasedGcra::TryLocal(const KeyDigest& d, int64_t cost, Decision* out) {
  const int64_t now = NowMs();
  bool taken = false;
  VisitCells(d, [&](int64_t* cell) {
    int64_t word = Cell(cell).load(std::memory_order_relaxed);
    if (Refused(word) && Expiry(word) > now) {
      out->allowed = false;
      out->limit = limit_;
      out->remaining = 0;
      out->retry_after_nanos = (Expiry(word) - now) * 1'000'000;
      out->window_nanos = window_nanos_;
      taken = true;
      return;
    }
    while (!Refused(word) && Units(word) >= cost && Expiry(word) > now) {
      if (Cell(cell).compare_exchange_weak(word, Pack(Expiry(word), Units(word) - cost),
                                           std::memory_order_acq_rel)) {
        out->allowed = true;
        out->limit = limit_;
        out->remaining = Units(word) - cost;  // what this process's lease has left
        out->retry_after_nanos = 0;
        out->window_nanos = window_nanos_;
        taken = true;
        return;
      }
    }
  });
  if (taken) local_.fetch_add(1, std::memory_order_relaxed);
  return taken;
}

std::shared_ptr<PendingReply> LeasedGcra::StartLease(const KeyDigest& d, int64_t cost, bool want_fd,
                                                     Ticket* ticket) {
  // Whatever the current lease holds (too little, or expired) goes back with this request.
  ClusterGcra::GiveBack back;
  {
    MutexLock lock(&StripeOf(d));
    VisitCells(d, [&](int64_t* cells) {
      const int64_t word = Cell(cells).exchange(0, std::memory_order_acq_rel);
      if (Refused(word) || Units(word) == 0) return;
      const int64_t grant = Cell(cells + 1).load(std::memory_order_relaxed);
      back = {Units(word), GrantMs(grant), Granted(grant)};
    });
  }
  ticket->sent_ms = NowMs();  // before the charge: local expiry errs early, never late
  ticket->want = std::max(cost, lease_units_);
  leases_.fetch_add(1, std::memory_order_relaxed);
  return cluster_->StartLease(d, ticket->want, back, want_fd);
}

void LeasedGcra::Keep(const KeyDigest& d, int64_t units, int64_t granted, int64_t grant_ms,
                      int64_t expires_ms) {
  if (units <= 0) return;
  MutexLock lock(&StripeOf(d));
  VisitCells(d, [&](int64_t* cells) {
    const int64_t now = NowMs();
    int64_t record = PackGrant(std::min(grant_ms, kMaxGrantMs), granted);
    int64_t word = Cell(cells).load(std::memory_order_relaxed);
    for (;;) {
      // Another thread's lease still live (two threads asked at once): merged, keeping the
      // earlier expiry (every unit stays within ttl of its grant) and, for the give-back, the
      // earlier grant time and the smaller grant (see the header: safe for any split).
      const bool live = !Refused(word) && Units(word) > 0 && Expiry(word) > now;
      int64_t merged_units = units, merged_expiry = expires_ms;
      if (live) {
        const int64_t older = Cell(cells + 1).load(std::memory_order_relaxed);
        merged_units = std::min(kUnitMask, Units(word) + units);
        merged_expiry = std::min(Expiry(word), expires_ms);
        record = PackGrant(std::min(GrantMs(older), std::min(grant_ms, kMaxGrantMs)),
                           std::min(Granted(older), granted));
      }
      // Cell 1 changes only under the stripe lock, so a failed CAS below leaves it consistent.
      Cell(cells + 1).store(record, std::memory_order_relaxed);
      if (Cell(cells).compare_exchange_weak(word, Pack(merged_expiry, merged_units),
                                            std::memory_order_acq_rel)) {
        return;
      }
    }
  });
}

void LeasedGcra::RefuseUntil(const KeyDigest& d, int64_t until_ms) {
  const int64_t now = NowMs();
  if (until_ms <= now) return;
  // A day at most (the expiry has 40 bits); after that a round trip asks Redis again.
  until_ms = std::min(until_ms, now + int64_t{86'400'000});
  MutexLock lock(&StripeOf(d));
  VisitCells(d, [&](int64_t* cell) {
    int64_t word = Cell(cell).load(std::memory_order_relaxed);
    // Never over a live lease another thread just installed: its units are good to spend.
    while (!(!Refused(word) && Units(word) > 0 && Expiry(word) > now)) {
      if (Cell(cell).compare_exchange_weak(word, PackRefused(until_ms), std::memory_order_acq_rel)) {
        return;
      }
    }
  });
}

absl::StatusOr<Decision> LeasedGcra::FinishLease(
    const KeyDigest& d, int64_t cost, const Ticket& ticket,
    const absl::StatusOr<std::vector<int64_t>>& reply) {
  if (!reply.ok()) return cluster_->Finish(d, cost, reply);  // the failure mode, or the error
  if (absl::Status s = cluster_->CheckLeaseReply(*reply, ticket.want); !s.ok()) return s;
  const int64_t granted = (*reply)[0];
  // Reuse the strict reply's shape for the numbers: {allowed, binding, remaining, retry, reset,
  // now_us}; a leased decision carries no charge time (its Refund gives nothing back).
  std::vector<int64_t> as_decision(reply->begin(), reply->begin() + 5);
  as_decision[0] = granted >= cost ? 1 : 0;
  as_decision.push_back(0);
  absl::StatusOr<Decision> out = cluster_->Finish(d, cost, as_decision);
  if (!out.ok()) return out;
  out->charged_at_nanos = Decision::kNoCharge;
  const int64_t grant_ms = (*reply)[5];
  if (granted >= cost) {
    Keep(d, granted - cost, granted, grant_ms, ticket.sent_ms + ttl_ms_);
    out->retry_after_nanos = 0;
  } else if (granted > 0) {
    Keep(d, granted, granted, grant_ms, ticket.sent_ms + ttl_ms_);  // fine for smaller requests
    out->allowed = false;
    out->retry_after_nanos = std::max<int64_t>(out->retry_after_nanos, 1);
  } else {
    out->retry_after_nanos = std::max<int64_t>(out->retry_after_nanos, 1);
    RefuseUntil(d, ticket.sent_ms + out->retry_after_nanos / 1'000'000);
  }
  return out;
}

absl::StatusOr<Decision> LeasedGcra::Decide(const KeyDigest& d, int64_t cost) {
  Decision out;
  if (TryLocal(d, cost, &out)) return out;
  Ticket ticket;
  auto pending = StartLease(d, cost, /*want_fd=*/false, &ticket);
  return FinishLease(d, cost, ticket, pending->Wait(cluster_->reply_timeout()));
}

}  // namespace internal
}  // namespace v1
}  // namespace sluice
