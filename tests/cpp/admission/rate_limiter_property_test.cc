// Exactness of the GCRA limiter over random arrival schedules, against an independent oracle.
//
// For a window (limit L per period P, burst B) the bound is: over every closed interval [a, b],
// admitted units <= B + floor((b - a) * L / P). The oracle checks, for every schedule:
//   * soundness: no interval between two admissions breaks the bound (every window);
//   * completeness: every refusal was forced: admitting it would have broken the bound for some
//     interval ending at the refusal (for at least one window).
// The oracle uses 128-bit arithmetic on the raw schedule, not the limiter's units.

#include <random>
#include <vector>

#include <catch2/catch.hpp>

#include "sluice/rate_limiter.h"
#include "test_support.h"

using sluice::ManualClock;
using sluice::RateLimiter;
using sluice::Window;
using sluice_test::Value;

namespace {

struct Event {
  int64_t t;
  int64_t cost;
};

// Units the window allows over an interval of length `span` nanoseconds.
int64_t Allowance(const Window& w, int64_t span) {
  const __int128 earned =
      static_cast<__int128>(span) * w.limit / absl::ToInt64Nanoseconds(w.period);
  return w.effective_burst() + static_cast<int64_t>(earned);
}

// Would admitting `cost` at time `t` break window `w`, given the admissions so far (sorted)?
bool Breaks(const Window& w, const std::vector<Event>& admitted, int64_t t, int64_t cost) {
  int64_t sum = cost;
  if (sum > Allowance(w, 0)) return true;
  for (auto it = admitted.rbegin(); it != admitted.rend(); ++it) {  // intervals [a, t]
    sum += it->cost;
    if (sum > Allowance(w, t - it->t)) return true;
  }
  return false;
}

// Windows with exact arithmetic (limit / gcd(limit, period) <= 16) and varied shapes.
Window RandomWindow(std::mt19937_64& rng) {
  static const int64_t kLimits[] = {1, 2, 3, 5, 7, 10, 12, 16, 100, 250, 1000};
  static const int64_t kPeriodsMs[] = {1, 10, 100, 1000, 60'000};
  const int64_t limit = kLimits[rng() % std::size(kLimits)];
  const int64_t period_ms = kPeriodsMs[rng() % std::size(kPeriodsMs)];
  const int64_t burst = (rng() % 3 == 0) ? 0 : 1 + static_cast<int64_t>(rng() % (limit + 4));
  return {limit, absl::Milliseconds(period_ms), burst};
}

}  // namespace

TEST_CASE("GCRA is exact over random schedules, with one and several windows") {
  std::mt19937_64 rng(20261123);
  for (int trial = 0; trial < 400; ++trial) {
    const int n_windows = 1 + static_cast<int>(rng() % 3);
    std::vector<Window> windows;
    int64_t max_cost = std::numeric_limits<int64_t>::max();
    for (int i = 0; i < n_windows; ++i) {
      windows.push_back(RandomWindow(rng));
      max_cost = std::min(max_cost, windows.back().effective_burst());
    }
    ManualClock clock;
    RateLimiter::Options o;
    o.windows = windows;
    auto rl = Value(RateLimiter::Create(o, &clock));

    // Arrivals: bursts of same-instant requests and gaps around the shortest interval.
    const int64_t shortest_interval = absl::ToInt64Nanoseconds(windows[0].period) / windows[0].limit;
    std::vector<Event> admitted;
    int64_t t = 0;
    for (int step = 0; step < 250; ++step) {
      switch (rng() % 4) {
        case 0: break;                                                 // same instant
        case 1: t += 1 + rng() % 1000; break;                          // nanoseconds apart
        case 2: t += rng() % (2 * shortest_interval + 1); break;       // around one interval
        default: t += rng() % (20 * shortest_interval + 1); break;     // a lull
      }
      const int64_t cost = 1 + static_cast<int64_t>(rng() % std::min<int64_t>(max_cost, 3));
      clock.SetNanos(t);
      const sluice::Decision d = Value(rl->TryAcquire("k", cost));
      bool forced = false;
      for (const Window& w : windows) forced = forced || Breaks(w, admitted, t, cost);
      INFO("trial " << trial << " step " << step << " t=" << t << " cost=" << cost);
      REQUIRE(d.allowed == !forced);  // sound (admits only within the bound) and complete
      if (d.allowed) {
        admitted.push_back({t, cost});
      } else {
        // Retrying exactly at retry_after succeeds (if nothing else arrives), not a ns earlier.
        bool early = false;
        for (const Window& w : windows) {
          early = early || Breaks(w, admitted, t + d.retry_after_nanos - 1, cost);
        }
        bool on_time = true;
        for (const Window& w : windows) {
          on_time = on_time && !Breaks(w, admitted, t + d.retry_after_nanos, cost);
        }
        REQUIRE(early);
        REQUIRE(on_time);
      }
    }
  }
}

TEST_CASE("the retry_after and remaining of a decision agree with the oracle") {
  std::mt19937_64 rng(7);
  for (int trial = 0; trial < 200; ++trial) {
    const Window w = RandomWindow(rng);
    ManualClock clock;
    RateLimiter::Options o;
    o.windows = {w};
    auto rl = Value(RateLimiter::Create(o, &clock));
    std::vector<Event> admitted;
    int64_t t = 0;
    const int64_t interval = absl::ToInt64Nanoseconds(w.period) / w.limit;
    for (int step = 0; step < 100; ++step) {
      t += rng() % (interval + 1);
      clock.SetNanos(t);
      const sluice::Decision d = Value(rl->TryAcquire("k"));
      if (d.allowed) admitted.push_back({t, 1});
      // `remaining` more units fit right now, and not one more.
      if (d.remaining >= 0) {
        CHECK_FALSE(Breaks(w, admitted, t, d.remaining == 0 ? 0 : d.remaining));
        CHECK(Breaks(w, admitted, t, d.remaining + 1));
      }
    }
  }
}
