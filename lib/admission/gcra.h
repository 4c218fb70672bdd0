// Internal: GCRA arithmetic over keyed cells, shared by RateLimiter, LeakyBucket and TokenBudget.
//
// Each window keeps one cell per key: the TAT ("theoretical arrival time") in integer *units*,
// where one unit is 1/scale ns and scale = limit / gcd(limit, period_ns) (capped at 16), so that
// the emission interval period/limit is a whole number of units and the arithmetic is exact.
// Times are relative to the state's epoch (its clock at construction), so a window of scale s can
// run for 2^61 / s ns (4.5 years at s = 16, 73 years at s = 1) before its clock saturates; after
// that it refuses everything rather than wrap.
//
// A key is "whole" (as if never seen) when its TAT is at or before now; such keys are dropped by
// the table once they have been whole for a second (the margin absorbs threads whose clock
// reading is a little older than the sweeper's).

#ifndef SLUICE_LIB_GCRA_H_
#define SLUICE_LIB_GCRA_H_

#include <array>
#include <memory>
#include <utility>
#include <cstdint>
#include <limits>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "stores/keyed_table.h"
#include "stores/shared_table.h"
#include "sluice/clock.h"
#include "sluice/decision.h"
#include "sluice/window.h"

namespace sluice {
inline namespace v1 {
namespace internal {

struct GcraWindow {
  int64_t limit = 0;
  int64_t burst = 0;
  int64_t period_nanos = 0;
  int64_t scale = 1;      // units per nanosecond
  int64_t unit = 0;       // emission interval (period / limit), in units
  int64_t tolerance = 0;  // burst * unit: how far ahead of now a TAT may be after a charge
  int64_t horizon_nanos = 0;  // |now - epoch| beyond which this window's clock saturates
  bool exact = true;
};

// What the caller calls the Window's members, for error messages.
struct WindowFieldNames {
  absl::string_view limit = "limit";
  absl::string_view period = "period";
  absl::string_view burst = "burst";
};

// Validates `window`. Errors read "<prefix><field> must ...", e.g. prefix
// "sluice.RateLimiter: windows[1]." gives "sluice.RateLimiter: windows[1].limit must be > 0".
absl::StatusOr<GcraWindow> CompileWindow(const Window& window, absl::string_view prefix,
                                         const WindowFieldNames& names = {});

// `window` compiled at a given scale (units per ns; an object's window's, so that per-key limits
// share its TAT's unit): the emission interval is rounded up when the scale cannot express it,
// and exact is false. Validated as by CompileWindow first.
absl::StatusOr<GcraWindow> CompileWindowAtScale(const Window& window, int64_t scale,
                                                absl::string_view prefix);

inline constexpr int kMaxGcraWindows = KeyedTable::kMaxCells;
// The cell of a key never seen: at or before any `now`, so the key is whole.
inline constexpr int64_t kFreshGcraCell = std::numeric_limits<int64_t>::min() / 2;

// Process scope: a key's cells in this process's KeyedTable; time from the state's creation;
// idle keys are dropped.
class ProcessCells {
 public:
  ProcessCells(int cells_per_key, int64_t max_keys, const Clock& clock)
      : table_(cells_per_key, max_keys, kFreshGcraCell), epoch_nanos_(clock.NowNanos()) {}
  int64_t epoch_nanos() const { return epoch_nanos_; }
  template <typename Fn>
  absl::Status Visit(const KeyDigest& d, int64_t now_nanos, KeyedTable::IdleFn idle, Fn&& fn) {
    return table_.Visit(d, now_nanos, idle, std::forward<Fn>(fn));
  }
  bool VisitExisting(const KeyDigest& d, KeyedTable::CellsFn fn) {
    return table_.VisitExisting(d, fn);
  }
  int64_t DropIdle(KeyedTable::IdleFn idle) { return table_.DropIdle(idle); }
  int64_t size() const { return table_.size(); }
  int64_t memory_bytes() const { return table_.memory_bytes(); }

 private:
  KeyedTable table_;
  const int64_t epoch_nanos_;
};

// Host scope: a key's cells in a shared-memory table every process of the host maps; time from
// the region's epoch, common to them all; slots are never freed (see shared_table.h).
class HostCells {
 public:
  explicit HostCells(std::unique_ptr<SharedTable> table) : table_(std::move(table)) {}
  int64_t epoch_nanos() const { return table_->epoch_nanos(); }
  template <typename Fn>
  absl::Status Visit(const KeyDigest& d, int64_t /*now_nanos*/, KeyedTable::IdleFn /*idle*/,
                     Fn&& fn) {
    return table_->Visit(d, fn);
  }
  bool VisitExisting(const KeyDigest& d, KeyedTable::CellsFn fn) {
    return table_->VisitExisting(d, fn);
  }
  int64_t DropIdle(KeyedTable::IdleFn /*idle*/) { return 0; }
  int64_t size() const { return table_->size(); }
  int64_t memory_bytes() const { return table_->memory_bytes(); }

 private:
  const std::unique_ptr<SharedTable> table_;
};

// GCRA over the cells of `Cells` (ProcessCells or HostCells; instantiated for both in gcra.cc).
template <typename Cells>
class GcraState {
 public:
  // REQUIRES: 1 <= windows.size() <= kMaxGcraWindows; `cells` hold windows.size() cells a key.
  GcraState(std::vector<GcraWindow> windows, const Clock* clock, std::unique_ptr<Cells> cells);

  const Clock& clock() const { return *clock_; }
  const std::vector<GcraWindow>& windows() const { return windows_; }
  // The smallest burst of any window: the largest cost that can ever be admitted.
  int64_t min_burst() const { return min_burst_; }

  // Takes `cost` from every window or from none. Sets out->allowed, and the other fields of
  // `out` when `detailed` (skipping them saves the divisions on the bool-only fast path).
  // `key`: per-key windows (KeyWindows::gcra, at these windows' scales) or nullptr for the
  // object's. REQUIRES: 0 <= cost <= every window's burst.
  absl::Status Admit(const KeyDigest& d, int64_t cost, int64_t now_nanos, Decision* out,
                     bool detailed = true, const GcraWindow* key = nullptr);

  // Leaky-bucket booking on the single window: allowed when the departure delay <= max_wait.
  // REQUIRES: one window; cost * unit - tolerance <= max_wait (in units).
  absl::Status Queue(const KeyDigest& d, int64_t cost, int64_t max_wait_nanos, int64_t now_nanos,
                     Decision* out);

  // Adds `delta` (negative: refund) to every window, refusing nothing. `out` gets the balance.
  absl::Status Adjust(const KeyDigest& d, int64_t delta, int64_t now_nanos, Decision* out,
                      const GcraWindow* key = nullptr);

  // Gives back what is left of a charge of `cost` made at `charged_at_nanos`: per window,
  //   TAT := max(TAT - max(0, cost*unit - (now - charged_at)), now)    (in units; if TAT > now)
  // i.e. the charge minus what has drained since. Why that is safe: write term_k = t_k +
  // unit*(costs of admissions k and after) for the admissions not refunded; GCRA's TAT is the
  // largest term_k, and the state is kept at or above it. Taking out admission r lowers the
  // terms of earlier admissions by cost*unit, and those of later ones k not at all, but each
  // of those is at most term_r - cost*unit + (t_k - t_r) <= TAT - cost*unit + (now - t_r).
  // So the new TAT still bounds every term: a refused request stays forced, an admitted one
  // keeps the bound. Exact (the whole charge) when refunded at the admission's own time.
  // REQUIRES: 1 <= cost <= every window's burst. Absent keys are left absent.
  void Refund(const KeyDigest& d, int64_t cost, int64_t charged_at_nanos, int64_t now_nanos,
              const GcraWindow* key = nullptr);

  // The balance of `d` without changing it (whole if absent): allowed iff one unit would pass
  // every window now; if not, retry_after until it would, from the window that waits longest.
  Decision Peek(const KeyDigest& d, int64_t now_nanos, const GcraWindow* key = nullptr);

  int64_t DropIdle(int64_t now_nanos);
  int64_t key_count() const { return cells_->size(); }
  int64_t memory_bytes() const { return cells_->memory_bytes(); }

 private:
  using Units = std::array<int64_t, kMaxGcraWindows>;
  Units NowUnits(int64_t now_nanos) const;
  bool IsIdle(const int64_t* cells, const Units& now) const;
  template <typename Fn>
  absl::Status VisitCells(const KeyDigest& d, int64_t now_nanos, const Units& now, Fn&& fn) {
    return cells_->Visit(d, now_nanos, [&](const int64_t* c) { return IsIdle(c, now); }, fn);
  }
  // Admit for the common single-window case: no arrays, no second pass.
  void AdmitOneWindow(const GcraWindow& w, int64_t* cell, int64_t cost, int64_t now,
                      Decision* out, bool detailed) const;
  // Describes window `w` with TAT `tat` at `now` (units) into `out`; returns its remaining.
  static int64_t Describe(const GcraWindow& w, int64_t tat, int64_t now, Decision* out);

  const std::vector<GcraWindow> windows_;
  const int n_;
  const Clock* const clock_;
  const int64_t min_burst_;
  const std::unique_ptr<Cells> cells_;
  const int64_t epoch_nanos_;  // after cells_: a host region's epoch is read from it
};

using ProcessGcra = GcraState<ProcessCells>;
using HostGcra = GcraState<HostCells>;

extern template class GcraState<ProcessCells>;
extern template class GcraState<HostCells>;

}  // namespace internal
}  // namespace v1
}  // namespace sluice

#endif  // SLUICE_LIB_GCRA_H_
