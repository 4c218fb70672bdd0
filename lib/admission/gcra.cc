#include "admission/gcra.h"

#include "admission/gcra_backend.h"

#include <algorithm>
#include <atomic>
#include <limits>
#include <numeric>

#include "absl/numeric/int128.h"
#include "absl/strings/str_cat.h"

namespace sluice {
inline namespace v1 {
namespace internal {
namespace {

constexpr int64_t kMaxScale = 16;
// |now| in units never exceeds this. With TATs at most now + kMaxTolerance + kMaxDebt (2^62),
// every difference of a TAT and a now (TAT - now, up to 2^62 + 2^61) fits in an int64, however
// far a caller's `now` jumps back (TryAcquireAt(INT64_MAX), then TryAcquireAt(INT64_MIN)).
constexpr int64_t kMaxNowUnits = int64_t{1} << 61;
constexpr int64_t kMaxTolerance = int64_t{1} << 60;    // burst * unit
constexpr int64_t kMaxDebt = int64_t{1} << 60;         // how far past now debt may push a TAT
constexpr int64_t kFresh = kFreshGcraCell;
constexpr int64_t kIdleMarginNanos = 1'000'000'000;
constexpr int64_t kMaxPeriodNanos = int64_t{366} * 24 * 3600 * 1'000'000'000;

inline std::atomic_ref<int64_t> Cell(int64_t* p) { return std::atomic_ref<int64_t>(*p); }
inline int64_t Load(const int64_t* p) {
  return std::atomic_ref<int64_t>(*const_cast<int64_t*>(p)).load(std::memory_order_relaxed);
}

inline int64_t FloorDiv(int64_t a, int64_t b) {  // b > 0
  int64_t q = a / b;
  if ((a % b != 0) && (a < 0)) --q;
  return q;
}
inline int64_t CeilNanos(int64_t units, int64_t scale) {
  return units <= 0 ? 0 : (units + scale - 1) / scale;
}

}  // namespace

absl::StatusOr<GcraWindow> CompileWindow(const Window& window, absl::string_view prefix,
                                         const WindowFieldNames& names) {
  if (window.limit <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat(prefix, names.limit, " must be > 0, got ", window.limit));
  }
  if (window.period <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError(absl::StrCat(
        prefix, names.period, " must be > 0, got ", absl::FormatDuration(window.period)));
  }
  if (window.period > absl::Nanoseconds(kMaxPeriodNanos)) {
    return absl::InvalidArgumentError(absl::StrCat(
        prefix, names.period, " must be at most 366 days, got ", absl::FormatDuration(window.period)));
  }
  if (window.burst < 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        prefix, names.burst, " must be >= 0 (0 means the limit), got ", window.burst));
  }
  GcraWindow w;
  w.limit = window.limit;
  w.burst = window.effective_burst();
  w.period_nanos = absl::ToInt64Nanoseconds(window.period);
  if (w.limit > w.period_nanos) {
    return absl::InvalidArgumentError(absl::StrCat(
        prefix, names.limit, " must be at most one per nanosecond of the ", names.period, ", got ", w.limit, " per ",
        absl::FormatDuration(window.period)));
  }
  const int64_t g = std::gcd(w.limit, w.period_nanos);
  if (w.limit / g <= kMaxScale) {
    w.scale = w.limit / g;
    w.unit = w.period_nanos / g;  // == period * scale / limit, exactly
  } else {
    w.scale = kMaxScale;  // round the emission interval up: never admit more than the bound
    const absl::int128 scaled = static_cast<absl::int128>(w.period_nanos) * kMaxScale;
    w.unit = static_cast<int64_t>((scaled + w.limit - 1) / w.limit);
    w.exact = false;
  }
  w.horizon_nanos = kMaxNowUnits / w.scale;
  if (__builtin_mul_overflow(w.burst, w.unit, &w.tolerance) || w.tolerance > kMaxTolerance) {
    return absl::InvalidArgumentError(absl::StrCat(
        prefix, names.burst, " is too large: it must cover under 36 years of the rate, got ",
        w.burst));
  }
  return w;
}

absl::StatusOr<GcraWindow> CompileWindowAtScale(const Window& window, int64_t scale,
                                                absl::string_view prefix) {
  absl::StatusOr<GcraWindow> w = CompileWindow(window, prefix);
  if (!w.ok()) return w.status();
  // unit = period * scale / limit, rounded up: a coarser unit only refuses early.
  const absl::int128 scaled = static_cast<absl::int128>(w->period_nanos) * scale;
  w->scale = scale;
  w->unit = static_cast<int64_t>((scaled + w->limit - 1) / w->limit);
  w->exact = scaled % w->limit == 0;
  w->horizon_nanos = kMaxNowUnits / scale;
  if (__builtin_mul_overflow(w->burst, w->unit, &w->tolerance) || w->tolerance > kMaxTolerance) {
    return absl::InvalidArgumentError(absl::StrCat(
        prefix, "burst is too large: it must cover under 36 years of the rate, got ", w->burst));
  }
  return *w;
}

template <typename Cells>
GcraState<Cells>::GcraState(std::vector<GcraWindow> windows, const Clock* clock,
                            std::unique_ptr<Cells> cells)
    : windows_(std::move(windows)),
      n_(static_cast<int>(windows_.size())),
      clock_(clock),
      min_burst_(std::min_element(windows_.begin(), windows_.end(),
                                  [](const GcraWindow& a, const GcraWindow& b) {
                                    return a.burst < b.burst;
                                  })->burst),
      cells_(std::move(cells)),
      epoch_nanos_(cells_->epoch_nanos()) {}

template <typename Cells>
typename GcraState<Cells>::Units GcraState<Cells>::NowUnits(int64_t now_nanos) const {
  int64_t rel;
  if (__builtin_sub_overflow(now_nanos, epoch_nanos_, &rel)) {
    rel = now_nanos < 0 ? std::numeric_limits<int64_t>::min() : std::numeric_limits<int64_t>::max();
  }
  Units now;  // only the first n_ entries are meaningful; skipping the zero-fill is measurable
  for (int i = 0; i < n_; ++i) {
    const int64_t horizon = windows_[i].horizon_nanos;  // saturate rather than wrap
    now[i] = std::clamp(rel, -horizon, horizon) * windows_[i].scale;
  }
  return now;
}

template <typename Cells>
bool GcraState<Cells>::IsIdle(const int64_t* cells, const Units& now) const {
  for (int i = 0; i < n_; ++i) {
    if (Load(cells + i) > now[i] - kIdleMarginNanos * windows_[i].scale) return false;
  }
  return true;
}

template <typename Cells>
int64_t GcraState<Cells>::Describe(const GcraWindow& w, int64_t tat, int64_t now, Decision* out) {
  const int64_t used = std::max(tat, now) - now;
  const int64_t remaining = FloorDiv(w.tolerance - used, w.unit);
  out->limit = w.limit;
  out->remaining = remaining;
  out->reset_after_nanos = CeilNanos(used, w.scale);
  out->window_nanos = w.period_nanos;
  return remaining;
}

template <typename Cells>
void GcraState<Cells>::AdmitOneWindow(const GcraWindow& w, int64_t* cell, int64_t cost,
                                      int64_t now, Decision* out, bool detailed) const {
  const int64_t charge = cost * w.unit;
  int64_t tat = Load(cell);
  for (;;) {
    const int64_t next = std::max(tat, now) + charge;
    if (next - now > w.tolerance) {
      out->allowed = false;
      if (detailed) {
        out->retry_after_nanos = std::max<int64_t>(1, CeilNanos(next - w.tolerance - now, w.scale));
        Describe(w, tat, now, out);
      }
      return;
    }
    if (Cell(cell).compare_exchange_weak(tat, next, std::memory_order_acq_rel,
                                         std::memory_order_relaxed)) {
      out->allowed = true;
      if (detailed) {
        out->retry_after_nanos = 0;
        Describe(w, next, now, out);
      }
      return;
    }
  }
}

template <typename Cells>
absl::Status GcraState<Cells>::Admit(const KeyDigest& d, int64_t cost, int64_t now_nanos,
                                   Decision* out, bool detailed, const GcraWindow* key) {
  const Units now = NowUnits(now_nanos);
  const GcraWindow* const windows = key != nullptr ? key : windows_.data();
  if (n_ == 1) {
    return VisitCells(d, now_nanos, now, [&](int64_t* cells) {
      AdmitOneWindow(windows[0], cells, cost, now[0], out, detailed);
    });
  }
  return VisitCells(d, now_nanos, now, [&](int64_t* cells) {
    Units after;
    int refused = -1;
    if (n_ > 1) {  // a read-only pass first, so the common refusal charges and returns nothing
      for (int i = 0; i < n_ && refused < 0; ++i) {
        const GcraWindow& w = windows[i];
        if (std::max(Load(cells + i), now[i]) + cost * w.unit - now[i] > w.tolerance) refused = i;
      }
    }
    for (int i = 0; i < n_ && refused < 0; ++i) {
      const GcraWindow& w = windows[i];
      const int64_t charge = cost * w.unit;
      int64_t tat = Load(cells + i);
      for (;;) {
        const int64_t next = std::max(tat, now[i]) + charge;
        if (next - now[i] > w.tolerance) {
          refused = i;
          for (int j = 0; j < i; ++j) {  // give back what the earlier windows took
            Cell(cells + j).fetch_sub(cost * windows[j].unit, std::memory_order_acq_rel);
          }
          break;
        }
        if (Cell(cells + i).compare_exchange_weak(tat, next, std::memory_order_acq_rel,
                                                  std::memory_order_relaxed)) {
          after[i] = next;
          break;
        }
      }
    }
    out->allowed = refused < 0;
    if (!detailed) return;
    if (out->allowed) {
      out->retry_after_nanos = 0;
      int binding = 0;
      int64_t least = std::numeric_limits<int64_t>::max();
      for (int i = 0; i < n_; ++i) {
        const int64_t left = FloorDiv(windows[i].tolerance - (after[i] - now[i]), windows[i].unit);
        if (left < least) least = left, binding = i;
      }
      Describe(windows[binding], after[binding], now[binding], out);
      return;
    }
    // Refused: the binding window is the one that makes the caller wait longest.
    int binding = refused;
    int64_t longest = -1;
    for (int i = 0; i < n_; ++i) {
      const GcraWindow& w = windows[i];
      const int64_t wait = CeilNanos(
          std::max(Load(cells + i), now[i]) + cost * w.unit - w.tolerance - now[i], w.scale);
      if (wait > longest) longest = wait, binding = i;
    }
    out->retry_after_nanos = std::max<int64_t>(longest, 1);
    Describe(windows[binding], Load(cells + binding), now[binding], out);
  });
}

template <typename Cells>
absl::Status GcraState<Cells>::Queue(const KeyDigest& d, int64_t cost, int64_t max_wait_nanos,
                                   int64_t now_nanos, Decision* out) {
  const Units now = NowUnits(now_nanos);
  const GcraWindow& w = windows_[0];
  const int64_t max_wait = max_wait_nanos * w.scale;
  return VisitCells(d, now_nanos, now, [&](int64_t* cells) {
    int64_t tat = Load(cells);
    for (;;) {
      const int64_t next = std::max(tat, now[0]) + cost * w.unit;
      const int64_t wait = next - w.tolerance - now[0];
      if (wait > max_wait) {
        out->allowed = false;
        out->delay_nanos = 0;
        out->retry_after_nanos = std::max<int64_t>(1, CeilNanos(wait - max_wait, w.scale));
        Describe(w, tat, now[0], out);
        out->remaining = std::max<int64_t>(0, out->remaining);
        return;
      }
      if (Cell(cells).compare_exchange_weak(tat, next, std::memory_order_acq_rel,
                                            std::memory_order_relaxed)) {
        out->allowed = true;
        out->retry_after_nanos = 0;
        out->delay_nanos = CeilNanos(wait, w.scale);
        Describe(w, next, now[0], out);
        out->remaining = std::max<int64_t>(0, out->remaining);
        return;
      }
    }
  });
}

template <typename Cells>
absl::Status GcraState<Cells>::Adjust(const KeyDigest& d, int64_t delta, int64_t now_nanos,
                                    Decision* out, const GcraWindow* key) {
  const Units now = NowUnits(now_nanos);
  const GcraWindow* const windows = key != nullptr ? key : windows_.data();
  return VisitCells(d, now_nanos, now, [&](int64_t* cells) {
    int binding = 0;
    int64_t least = std::numeric_limits<int64_t>::max();
    int64_t binding_tat = 0;
    for (int i = 0; i < n_; ++i) {
      const GcraWindow& w = windows[i];
      int64_t change;
      if (__builtin_mul_overflow(delta, w.unit, &change)) change = delta > 0 ? kMaxDebt : -kMaxDebt;
      change = std::clamp(change, -kMaxDebt, kMaxDebt);
      int64_t tat = Load(cells + i);
      int64_t next;
      for (;;) {
        if (change >= 0) {
          next = std::min(std::max(tat, now[i]) + change, now[i] + kMaxDebt);
        } else if (tat <= now[i]) {
          next = tat;  // already whole: a refund cannot fill it past whole
          break;
        } else {
          next = std::max(tat + change, now[i]);
        }
        if (Cell(cells + i).compare_exchange_weak(tat, next, std::memory_order_acq_rel,
                                                  std::memory_order_relaxed)) {
          break;
        }
      }
      const int64_t left = FloorDiv(w.tolerance - (std::max(next, now[i]) - now[i]), w.unit);
      if (left < least) least = left, binding = i, binding_tat = next;
    }
    Describe(windows[binding], binding_tat, now[binding], out);
    out->allowed = least >= 0;
    out->retry_after_nanos = 0;
    if (!out->allowed) {
      // Until the debt has refilled: the balance climbs back to zero.
      const GcraWindow& w = windows[binding];
      out->retry_after_nanos =
          std::max<int64_t>(1, CeilNanos(binding_tat - w.tolerance - now[binding], w.scale));
    }
  });
}

template <typename Cells>
Decision GcraState<Cells>::Peek(const KeyDigest& d, int64_t now_nanos, const GcraWindow* key) {
  const Units now = NowUnits(now_nanos);
  const GcraWindow* const windows = key != nullptr ? key : windows_.data();
  Units tats;
  tats.fill(kFresh);
  auto read = [&](int64_t* cells) {
    for (int i = 0; i < n_; ++i) tats[i] = Load(cells + i);
  };
  cells_->VisitExisting(d, read);
  // Allowed iff one unit would pass every window now. If not, the binding window is the one that
  // makes that unit wait longest, and retry_after says how long (as Admit's refusal would).
  Decision out;
  int binding = 0;
  int64_t least = std::numeric_limits<int64_t>::max();
  int64_t longest = 0;
  for (int i = 0; i < n_; ++i) {
    const GcraWindow& w = windows[i];
    const int64_t tat = std::max(tats[i], now[i]);
    const int64_t left = FloorDiv(w.tolerance - (tat - now[i]), w.unit);
    const int64_t wait = tat + w.unit - w.tolerance - now[i];  // units until one more fits
    if (wait > 0) {
      const int64_t nanos = std::max<int64_t>(1, CeilNanos(wait, w.scale));
      if (nanos > longest) longest = nanos, binding = i;
    } else if (longest == 0 && left < least) {
      least = left, binding = i;
    }
  }
  Describe(windows[binding], tats[binding], now[binding], &out);
  out.allowed = longest == 0;
  out.retry_after_nanos = longest;
  return out;
}

template <typename Cells>
void GcraState<Cells>::Refund(const KeyDigest& d, int64_t cost, int64_t charged_at_nanos,
                              int64_t now_nanos, const GcraWindow* key) {
  const Units now = NowUnits(now_nanos);
  const Units at = NowUnits(charged_at_nanos);
  const GcraWindow* const windows = key != nullptr ? key : windows_.data();
  cells_->VisitExisting(d, [&](int64_t* cells) {
    for (int i = 0; i < n_; ++i) {
      // What is left of the charge: cost * unit (<= tolerance) minus what drained since.
      const int64_t give = cost * windows[i].unit - std::max<int64_t>(0, now[i] - at[i]);
      if (give <= 0) continue;
      int64_t tat = Load(cells + i);
      while (tat > now[i] &&
             !Cell(cells + i).compare_exchange_weak(tat, std::max(tat - give, now[i]),
                                                    std::memory_order_acq_rel,
                                                    std::memory_order_relaxed)) {
      }
    }
  });
}

template <typename Cells>
int64_t GcraState<Cells>::DropIdle(int64_t now_nanos) {
  const Units now = NowUnits(now_nanos);
  return cells_->DropIdle([&](const int64_t* cells) { return IsIdle(cells, now); });
}

template class GcraState<ProcessCells>;
template class GcraState<HostCells>;

// ---- Process and host scope: the backends over GcraState -----------------------------------
// Here rather than in a file of their own so that the compiler can inline GcraState's methods
// into them: a decision then costs one (virtual) call, as it did before the seam.

namespace {

template <typename Cells>
class LocalGcraBackend final : public GcraBackend {
 public:
  LocalGcraBackend(std::vector<GcraWindow> windows, const Clock* clock,
                   std::unique_ptr<Cells> cells)
      : GcraBackend(windows, clock), state_(std::move(windows), clock, std::move(cells)) {}

  absl::StatusOr<Decision> Admit(const KeyDigest& d, int64_t cost, int64_t now_nanos,
                                 const KeyWindows* limits) override {
    Decision decision;
    if (absl::Status s = state_.Admit(d, cost, now_nanos, &decision, true, Of(limits)); !s.ok()) {
      return s;
    }
    if (decision.allowed) decision.charged_at_nanos = now_nanos;
    return decision;
  }
  absl::StatusOr<PendingDecision> StartAdmit(const KeyDigest& d, int64_t cost, int64_t now_nanos,
                                             const KeyWindows* limits) override {
    return Ready(Admit(d, cost, now_nanos, limits));
  }
  bool Allow(const KeyDigest& d, int64_t cost, int64_t now_nanos,
             const KeyWindows* limits) override {
    Decision decision;
    return state_.Admit(d, cost, now_nanos, &decision, /*detailed=*/false, Of(limits)).ok() &&
           decision.allowed;
  }
  std::optional<bool> AllowWithoutWaiting(const KeyDigest& d, int64_t cost, int64_t now_nanos,
                                          const KeyWindows* limits) override {
    return Allow(d, cost, now_nanos, limits);
  }
  absl::Status Refund(const KeyDigest& d, int64_t cost, int64_t charged_at_nanos,
                      int64_t now_nanos, const KeyWindows* limits) override {
    state_.Refund(d, cost, charged_at_nanos, now_nanos, Of(limits));
    return absl::OkStatus();
  }

  absl::StatusOr<Decision> Queue(const KeyDigest& d, int64_t cost, int64_t max_wait_nanos,
                                 int64_t now_nanos) override {
    Decision decision;
    if (absl::Status s = state_.Queue(d, cost, max_wait_nanos, now_nanos, &decision); !s.ok()) {
      return s;
    }
    if (decision.allowed) decision.charged_at_nanos = now_nanos;
    return decision;
  }
  absl::StatusOr<PendingDecision> StartQueue(const KeyDigest& d, int64_t cost,
                                             int64_t max_wait_nanos, int64_t now_nanos) override {
    return Ready(Queue(d, cost, max_wait_nanos, now_nanos));
  }

  absl::StatusOr<Decision> Adjust(const KeyDigest& d, int64_t delta, int64_t now_nanos,
                                  const KeyWindows* limits) override {
    Decision decision;
    if (absl::Status s = state_.Adjust(d, delta, now_nanos, &decision, Of(limits)); !s.ok()) {
      return s;
    }
    return decision;
  }
  absl::StatusOr<PendingDecision> StartAdjust(const KeyDigest& d, int64_t delta,
                                              int64_t now_nanos,
                                              const KeyWindows* limits) override {
    return Ready(Adjust(d, delta, now_nanos, limits));
  }

  PendingDecision StartPeek(const KeyDigest& d, int64_t now_nanos,
                            const KeyWindows* limits) override {
    return PendingDecision(state_.Peek(d, now_nanos, Of(limits)));
  }

  int64_t DropIdle(int64_t now_nanos) override { return state_.DropIdle(now_nanos); }
  int64_t key_count() const override { return state_.key_count(); }
  int64_t memory_bytes() const override { return state_.memory_bytes(); }

 private:
  static const GcraWindow* Of(const KeyWindows* limits) {
    return limits != nullptr ? limits->gcra.data() : nullptr;
  }
  static absl::StatusOr<PendingDecision> Ready(absl::StatusOr<Decision> decision) {
    if (!decision.ok()) return decision.status();
    return PendingDecision(*decision);
  }

  GcraState<Cells> state_;
};

}  // namespace

std::unique_ptr<GcraBackend> NewProcessGcraBackend(std::vector<GcraWindow> windows,
                                                   int64_t max_keys, const Clock* clock) {
  const int cells = static_cast<int>(windows.size());
  return std::make_unique<LocalGcraBackend<ProcessCells>>(
      std::move(windows), clock, std::make_unique<ProcessCells>(cells, max_keys, *clock));
}

std::unique_ptr<GcraBackend> NewHostGcraBackend(std::vector<GcraWindow> windows,
                                                std::unique_ptr<SharedTable> table,
                                                const Clock* clock) {
  return std::make_unique<LocalGcraBackend<HostCells>>(
      std::move(windows), clock, std::make_unique<HostCells>(std::move(table)));
}


}  // namespace internal
}  // namespace v1
}  // namespace sluice
