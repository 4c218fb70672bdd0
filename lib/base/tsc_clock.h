// Internal: the timestamp-counter clock behind Clock::Tsc() (sluice/clock.h documents the contract).
//
// The process uses one instance (Clock::Tsc()); tests build their own to force the fallback or to
// re-anchor often. All instances share one per-thread "last value read" (the cheap monotonic
// clamp), so a thread never sees any TSC clock go backwards, whichever instance it reads.
#ifndef SLUICE_LIB_BASE_TSC_CLOCK_H_
#define SLUICE_LIB_BASE_TSC_CLOCK_H_

#include <atomic>
#include <cstdint>
#include <memory>

#include "base/fork_hooks.h"
#include "sluice/clock.h"

namespace sluice {
inline namespace v1 {
namespace internal {

class TscClock final : public Clock {
 public:
  struct Options {
    // Testing hook: skip the counter and read CLOCK_MONOTONIC, as on a machine without invariant
    // TSC.
    bool force_fallback = false;
    // How often a reader re-anchors the counter on CLOCK_MONOTONIC (see clock.h).
    int64_t reanchor_period_nanos = 1'000'000'000;
  };

  // Calibrates (about 4 ms: two short real sleeps). Never fails: a counter it cannot trust makes
  // it read CLOCK_MONOTONIC, and status() says why.
  explicit TscClock(Options options);
  TscClock(const TscClock&) = delete;
  TscClock& operator=(const TscClock&) = delete;

  int64_t NowNanos() const noexcept override;
  TscClockStatus status() const noexcept;

 private:
  struct Pair {  // one counter reading and the CLOCK_MONOTONIC reading taken between two of them
    uint64_t tsc = 0;
    int64_t mono = 0;
    int64_t half_bracket_nanos = 0;
  };
  Pair ReadPair() const noexcept;
  const char* Calibrate() noexcept;  // nullptr: the counter is usable
  void Reanchor(uint64_t tsc) const noexcept;
  void Publish(uint64_t base_tsc, int64_t base_nanos, uint64_t mult,
               uint64_t next_anchor_tsc) const noexcept;
  static int64_t MonotonicNanos() noexcept;

  const Options options_;
  bool uses_tsc_ = false;
  const char* reason_ = "";
  double ticks_per_second_ = 0;
  uint64_t period_ticks_ = 0;

  // The conversion nanos = base_nanos + ((tsc - base_tsc) * mult) >> kShift, published under a
  // sequence lock (odd: being rewritten; a reader that sees it reads CLOCK_MONOTONIC once).
  mutable std::atomic<uint64_t> seq_{0};
  mutable std::atomic<uint64_t> base_tsc_{0};
  mutable std::atomic<int64_t> base_nanos_{0};
  mutable std::atomic<uint64_t> mult_{0};
  mutable std::atomic<uint64_t> next_anchor_tsc_{~uint64_t{0}};

  // Re-anchoring state, touched only by the thread holding `reanchoring_`.
  mutable std::atomic<bool> reanchoring_{false};
  mutable Pair last_pair_;
  mutable std::atomic<int64_t> last_offset_nanos_{0};
  mutable std::atomic<int64_t> max_half_bracket_nanos_{0};
  mutable std::atomic<int64_t> anchors_{0};
  std::unique_ptr<ForkHooks> fork_hooks_;  // a fork never copies a half-written conversion
};

}  // namespace internal
}  // namespace v1
}  // namespace sluice

#endif  // SLUICE_LIB_BASE_TSC_CLOCK_H_
