// -----------------------------------------------------------------------------
// File: sluice/key_limits.h
// -----------------------------------------------------------------------------
//
// `KeyLimits` are windows for one call instead of the object's own: one RateLimiter (or
// TokenBudget) serves every key, each with the limits the caller looked up for it (a plan, a
// tier, a per-app cap kept in the caller's database), in every scope, without an object per
// value. They are compiled once by the object that will use them (CompileKeyLimits) and are
// cheap to copy (a shared pointer), so a caller keeps one per plan and passes it on each call:
//
//   absl::StatusOr<sluice::KeyLimits> pro = limiter->CompileKeyLimits(
//       {sluice::Window::PerSecond(50), sluice::Window::PerHour(20000)});
//   if (!pro.ok()) return pro.status();       // names the bad field
//   absl::StatusOr<sluice::Decision> d = limiter->TryAcquire(app_id, 1, *pro);
//
// Rules (checked by CompileKeyLimits; errors name windows[i].<field>):
//   * as many windows as the object's Options::windows, of the same kinds, in the same order:
//     window i of the limits replaces the object's window i and shares its state for the key;
//   * GCRA windows are compiled at the scale of the object's window i (the state's unit of time),
//     so a key whose limits change keeps meaningful state; when that scale cannot express the
//     emission interval exactly it is rounded *up* (the key may be refused a little early, never
//     admitted beyond its bound) and exact() is false;
//   * a sliding window's limit is at most the object's window i limit (the log's capacity per
//     key); any valid period;
//   * in host scope the region is still created (and checked) with Options::windows;
//   * cluster scope: strict mode only (leased mode refuses with FailedPrecondition naming
//     cluster.mode: a lease is sized for the object's windows); periods whole microseconds.
// Passing a KeyLimits to an object other than the one that compiled it, or a default-constructed
// one, is InvalidArgument.
//
// Changing a key's limits: each call is decided against the limits it passes, on the key's one
// state, so a key moved to other limits keeps what it has used.
//   * sliding: the log keeps the key's last admissions whatever limits admitted them; a key is
//     never admitted more than the larger of the two limits in one period, and never more than
//     the new limit in any period that starts after the change (periods differing: in cluster
//     scope each call drops the entries older than its own period, so after a move to a longer
//     period the admissions older than the shorter one no longer count);
//   * GCRA: the state is the time the key's admissions charged (its TAT), each admission
//     charging its own call's emission interval (period / limit) per unit. Over any interval
//     [a, b] the admissions' charges add up to at most (b - a) plus the last call's burst time
//     (burst * period / limit), and every interval that starts after the change obeys the new
//     limits' bound exactly. So a lower limit applies at once; and a key that used fast limits
//     and moves to limits with a longer burst time may take that difference at once (counted in
//     requests, more than either limit's bound over the interval that spans the change).
//
// Thread-safety: a KeyLimits is an immutable value; copies may be used from any thread.

#ifndef SLUICE_KEY_LIMITS_H_
#define SLUICE_KEY_LIMITS_H_

#include <memory>
#include <vector>

#include "sluice/window.h"

namespace sluice {
inline namespace v1 {

namespace internal {
struct KeyWindows;
}  // namespace internal

class RateLimiter;
class TokenBudget;

// sluice::KeyLimits
class KeyLimits {
 public:
  // Empty: refused by every call (InvalidArgument). Obtain one from CompileKeyLimits.
  KeyLimits() = default;

  // False when default-constructed.
  explicit operator bool() const { return compiled_ != nullptr; }
  // The windows as given to CompileKeyLimits (empty when default-constructed).
  const std::vector<Window>& windows() const;
  // Whether every GCRA window is exact at its object's scale (see sluice/window.h); true for
  // sliding windows.
  bool exact() const;

 private:
  friend class RateLimiter;
  friend class TokenBudget;
  explicit KeyLimits(std::shared_ptr<const internal::KeyWindows> compiled)
      : compiled_(std::move(compiled)) {}

  std::shared_ptr<const internal::KeyWindows> compiled_;
};

}  // namespace v1
}  // namespace sluice

#endif  // SLUICE_KEY_LIMITS_H_
