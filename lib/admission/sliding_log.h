// Internal: exact sliding windows (WindowKind::kSliding), the arithmetic over one key's cells.
//
// Per window a key keeps a ring of its last `limit` admission times, oldest first from `head`:
//
//   cells: [head, t_0, t_1, ..., t_{limit-1}]   (then the next window's, if any)
//
// The times are ascending from head (a key's times never go backwards: see Now), so the ring's
// entry at head + c - 1 is the c-th oldest of the last `limit` admissions. Admitting cost c at
// `now` keeps the bound "at most `limit` in any interval of length `period`" iff that entry has
// left the window (t <= now - period): then at most limit - c admissions lie in (now - period,
// now], and the c new ones fill it to at most `limit`. Otherwise that entry and the limit - c
// newer ones, limit - c + 1 admissions, all lie in (now - period, now], and admitting c would put
// limit + 1 there: the refusal is forced. So the check is one comparison per window, and exact.
// Admitting overwrites the c oldest entries with `now` and moves head by c.
//
//   retry_after = t_{c-th oldest} + period - now: at that time the entry leaves, and not before.
//   remaining   = limit - (entries after now - period), by binary search on the sorted ring.
//   reset_after = newest + period - now: when the window is empty if nothing else arrives.
//
// Times are "ticks": ns since the state's epoch (the process table's creation, or the host
// region's), clamped to +-2^61 (73 years) and offset by 2^62, so that 0 means "never" and an
// all-zero block is a fresh key; no sum or difference of ticks and a period (<= 366 days)
// overflows. The caller holds the key's lock for every call.
//
// Per-key limits (KeyWindows::sliding): window i of a call may have its own limit L <= the
// ring's `limit` C and any period P. The ring still keeps the last C admissions, so the last L
// are its newest L entries (logical indexes C - L .. C - 1), and the check is the same one
// comparison on the entry at C - L + cost - 1. A key whose limits change keeps its times.
//
// Refund removes `cost` entries recorded at one time t (a refused request's earlier admission):
// entries of one time are interchangeable, so removing any of them is removing that admission's.
// The entries older than the removed ones move up one place and the oldest place becomes 0
// ("never"): the ring stays ascending. An entry the ring already dropped needs nothing, and the
// entries it dropped before can never count again: an entry leaves the ring only when an
// admission found it outside its window, and a key's times never go back. (With per-key limits
// of longer periods, see IsIdle; a ring's capacity is the largest limit, so a key's last L
// admissions are always in it.)
#ifndef SLUICE_LIB_ADMISSION_SLIDING_LOG_H_
#define SLUICE_LIB_ADMISSION_SLIDING_LOG_H_

#include <atomic>
#include <cstdint>
#include <vector>

#include "absl/status/statusor.h"
#include "sluice/decision.h"
#include "sluice/window.h"

namespace sluice {
inline namespace v1 {
namespace internal {

struct SlidingWindow {
  int64_t limit = 0;
  int64_t period_nanos = 0;
};

// Whether `windows` are sliding windows: InvalidArgument naming windows[i].kind when they mix
// kinds (several sliding windows are fine; a mix with GCRA windows is refused). REQUIRES: not
// empty.
absl::StatusOr<bool> AreSliding(absl::string_view object, const std::vector<Window>& windows);

// Validates sliding windows (already compiled as GCRA windows, so limit and period are sound):
// burst must be 0 or the limit, limit at most kMaxSlidingLimit. Errors name windows[i].<field>.
absl::StatusOr<std::vector<SlidingWindow>> CompileSlidingWindows(
    absl::string_view object, const std::vector<Window>& windows);

class SlidingLog {
 public:
  // Ticks: see the file comment.
  static constexpr int64_t kMaxRelativeNanos = int64_t{1} << 61;
  static constexpr int64_t kTickOffset = int64_t{1} << 62;
  // A dropped key must have been idle this long past its window: a thread whose clock reading
  // is a little older than the dropper's must still find the entries it would count.
  static constexpr int64_t kIdleMarginNanos = 1'000'000'000;

  // REQUIRES: 1 <= windows.size() <= 8, each 1 <= limit <= kMaxSlidingLimit.
  explicit SlidingLog(std::vector<SlidingWindow> windows);

  const std::vector<SlidingWindow>& windows() const { return windows_; }
  // The int64 words one key takes: per window, a head and `limit` times.
  int cells() const { return cells_; }
  // The smallest limit: the largest cost that can ever be admitted.
  int64_t min_limit() const { return min_limit_; }

  // `now_nanos` on a clock whose epoch is `epoch_nanos`, as ticks (saturating).
  static int64_t Ticks(int64_t now_nanos, int64_t epoch_nanos);

  // Admits `cost` into every window or none. Sets out->allowed, and the other fields when
  // `detailed`. REQUIRES: 1 <= cost <= min_limit(); the key's lock held.
  // `key`: per-key windows (limit <= each ring's, see the file comment) or nullptr. Allowed:
  // `*recorded` (if not null) gets the time the entries were recorded (ticks).
  void Admit(int64_t* cells, int64_t cost, int64_t now_ticks, Decision* out,
             bool detailed = true, const SlidingWindow* key = nullptr,
             int64_t* recorded = nullptr) const;
  // Whether one unit would pass every window, without changing anything (`cells` may be null:
  // a key never seen).
  Decision Peek(const int64_t* cells, int64_t now_ticks, const SlidingWindow* key = nullptr) const;
  // Removes up to `cost` entries recorded at `at_ticks` from every window (see the file comment).
  void Refund(int64_t* cells, int64_t cost, int64_t at_ticks) const;
  // Whether every window has been empty for kIdleMarginNanos: the key may be forgotten. Counts
  // with the longest period any per-key limits of this log declared (NoteKeyPeriod).
  bool IsIdle(const int64_t* cells, int64_t now_ticks) const;
  // Per-key limits with this period exist: keys stay until it has passed too.
  void NoteKeyPeriod(int64_t period_nanos) const;
  // Restores every ring's order after a holder of the key's lock died mid-Admit (host scope):
  // entries it wrote count as admissions at their time, which can only refuse more. Not itself
  // crash-proof: a second holder killed in the middle of a Repair (microseconds, after a first
  // kill) can leave a time duplicated in place of another, so that key may admit one more.
  void Repair(int64_t* cells) const;

  // Tests only: `hook` runs inside every Admit that admits, after the first window's times are
  // written and before its head moves (where a killed holder leaves the most to repair).
  static void SetMidAdmitHookForTesting(void (*hook)());

 private:
  struct Layout {
    int64_t limit, period, offset;  // offset: of the window's head word
  };
  // The newest time of any window of the key (0: never).
  int64_t Newest(const int64_t* cells) const;
  // Window `w`'s entries after now - period (all entries are at or before now).
  int64_t CountInside(const int64_t* cells, const Layout& w, int64_t now, int64_t period) const;
  // Fills out's window fields for window `w` with `count` entries inside and newest `newest`.
  static void Describe(int64_t limit, int64_t period, int64_t count, int64_t newest, int64_t now,
                       Decision* out);
  // Window i's limit and period for a call: the key's, or the ring's.
  static int64_t LimitOf(const Layout& w, const SlidingWindow* key, size_t i) {
    return key != nullptr ? key[i].limit : w.limit;
  }
  static int64_t PeriodOf(const Layout& w, const SlidingWindow* key, size_t i) {
    return key != nullptr ? key[i].period_nanos : w.period;
  }

  std::vector<SlidingWindow> windows_;
  std::vector<Layout> layout_;
  int cells_ = 0;
  int64_t min_limit_ = 0;
  mutable std::atomic<int64_t> longest_key_period_{0};
};

}  // namespace internal
}  // namespace v1
}  // namespace sluice

#endif  // SLUICE_LIB_ADMISSION_SLIDING_LOG_H_
