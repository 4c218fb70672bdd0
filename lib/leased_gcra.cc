#include "leased_gcra.h"

#include <algorithm>

namespace sluice {
inline namespace v1 {
namespace internal {

namespace {
// [expiry ms : 40 | refused : 1 | units : 22]. "Refused" means Redis had no unit for this key
// until `expiry`: refusing locally until then is safe (it can only under-admit) and saves a round
// trip per refusal while a key is over its limit.
constexpr int kUnitBits = 22;
constexpr int64_t kUnitMask = (int64_t{1} << kUnitBits) - 1;
constexpr int64_t kRefusedBit = int64_t{1} << kUnitBits;
constexpr int kExpiryShift = kUnitBits + 1;

inline int64_t Pack(int64_t expires_ms, int64_t units) { return (expires_ms << kExpiryShift) | units; }
inline int64_t PackRefused(int64_t until_ms) { return (until_ms << kExpiryShift) | kRefusedBit; }
inline int64_t Units(int64_t word) { return word & kUnitMask; }
inline bool Refused(int64_t word) { return (word & kRefusedBit) != 0; }
inline int64_t Expiry(int64_t word) { return word >> kExpiryShift; }
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
      max_keys_(max_keys),
      table_(std::make_unique<KeyedTable>(1, max_keys, /*fresh_cell=*/0)),
      fork_hooks_(std::make_unique<ForkHooks>(nullptr, nullptr,
                                              [this] { ForgetLeasesInForkChild(); })) {}

LeasedGcra::~LeasedGcra() { fork_hooks_.reset(); }

void LeasedGcra::ForgetLeasesInForkChild() {
  (void)table_.release();
  table_ = std::make_unique<KeyedTable>(1, max_keys_, /*fresh_cell=*/0);
}

int64_t LeasedGcra::NowMs() const { return (clock_->NowNanos() - epoch_nanos_) / 1'000'000; }

bool LeasedGcra::TryLocal(const KeyDigest& d, int64_t cost, Decision* out) {
  const int64_t now = NowMs();
  bool taken = false;
  auto idle = [now](const int64_t* cells) { return Expiry(cells[0]) <= now; };
  (void)table_->Visit(d, clock_->NowNanos(), idle, [&](int64_t* cell) {
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
    while (Units(word) >= cost && Expiry(word) > now) {
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
  int64_t give_back = 0;
  const int64_t now = NowMs();
  auto idle = [now](const int64_t* cells) { return Expiry(cells[0]) <= now; };
  (void)table_->Visit(d, clock_->NowNanos(), idle, [&](int64_t* cell) {
    give_back = Units(Cell(cell).exchange(0, std::memory_order_acq_rel));
  });
  ticket->sent_ms = now;  // before the charge: local expiry errs early, never late
  leases_.fetch_add(1, std::memory_order_relaxed);
  return cluster_->StartLease(d, std::max(cost, lease_units_), give_back, want_fd);
}

void LeasedGcra::Keep(const KeyDigest& d, int64_t units, int64_t expires_ms) {
  if (units <= 0) return;
  const int64_t now = NowMs();
  auto idle = [now](const int64_t* cells) { return Expiry(cells[0]) <= now; };
  (void)table_->Visit(d, clock_->NowNanos(), idle, [&](int64_t* cell) {
    int64_t word = Cell(cell).load(std::memory_order_relaxed);
    for (;;) {
      // Merging with another thread's fresh lease keeps the earlier expiry (the bound holds for
      // every unit); units of an expired lease, or a refusal mark, are dropped.
      const bool live = !Refused(word) && Expiry(word) > now;
      const int64_t merged_units = std::min(kUnitMask, (live ? Units(word) : 0) + units);
      const int64_t merged_expiry = live ? std::min(Expiry(word), expires_ms) : expires_ms;
      if (Cell(cell).compare_exchange_weak(word, Pack(merged_expiry, merged_units),
                                           std::memory_order_acq_rel)) {
        return;
      }
    }
  });
}

void LeasedGcra::RefuseUntil(const KeyDigest& d, int64_t until_ms) {
  const int64_t now = NowMs();
  if (until_ms <= now) return;
  auto idle = [now](const int64_t* cells) { return Expiry(cells[0]) <= now; };
  (void)table_->Visit(d, clock_->NowNanos(), idle, [&](int64_t* cell) {
    int64_t word = Cell(cell).load(std::memory_order_relaxed);
    // Never over a live lease another thread just installed: its units are good to spend.
    while (!(Units(word) > 0 && Expiry(word) > now)) {
      if (Cell(cell).compare_exchange_weak(word, PackRefused(until_ms), std::memory_order_acq_rel)) {
        return;
      }
    }
  });
}

Decision LeasedGcra::FinishLease(const KeyDigest& d, int64_t cost, const Ticket& ticket,
                                 const absl::StatusOr<std::vector<int64_t>>& reply) {
  if (!reply.ok() || reply->size() != 5) return cluster_->Finish(d, cost, reply);  // failure mode
  const int64_t granted = (*reply)[0];
  // Reuse the strict reply's shape for the numbers: {allowed, binding, remaining, retry, reset}.
  std::vector<int64_t> as_decision = *reply;
  as_decision[0] = granted >= cost ? 1 : 0;
  Decision out = cluster_->Finish(d, cost, as_decision);
  if (granted >= cost) {
    Keep(d, granted - cost, ticket.sent_ms + ttl_ms_);
    out.retry_after_nanos = 0;
  } else if (granted > 0) {
    Keep(d, granted, ticket.sent_ms + ttl_ms_);  // too few for this request; fine for smaller ones
    out.allowed = false;
    out.retry_after_nanos = std::max<int64_t>(out.retry_after_nanos, 1);
  } else {
    out.retry_after_nanos = std::max<int64_t>(out.retry_after_nanos, 1);
    RefuseUntil(d, ticket.sent_ms + out.retry_after_nanos / 1'000'000);
  }
  return out;
}

Decision LeasedGcra::Decide(const KeyDigest& d, int64_t cost) {
  Decision out;
  if (TryLocal(d, cost, &out)) return out;
  Ticket ticket;
  auto pending = StartLease(d, cost, /*want_fd=*/false, &ticket);
  return FinishLease(d, cost, ticket, pending->Wait(cluster_->reply_timeout()));
}

}  // namespace internal
}  // namespace v1
}  // namespace sluice
