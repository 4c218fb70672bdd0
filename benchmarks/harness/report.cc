#include "report.h"

#include <algorithm>
#include <cstdio>
#include <numeric>
#include <string>

namespace harness {
namespace {

std::string Format(const char* fmt, auto... args) {
  char buffer[256];
  std::snprintf(buffer, sizeof(buffer), fmt, args...);
  return buffer;
}

// Jain's fairness index over each tenant's admitted / entitled: 1.0 when every tenant got the
// same fraction of what it was entitled to.
double JainIndex(const std::vector<TenantOutcome>& tenants) {
  double sum = 0, squares = 0;
  int n = 0;
  for (const auto& t : tenants) {
    if (t.entitled <= 0) continue;
    const double x = t.admitted / t.entitled;
    sum += x;
    squares += x * x;
    ++n;
  }
  return n == 0 || squares == 0 ? 1.0 : sum * sum / (n * squares);
}

}  // namespace

void PrintReport(const Scenario& s, Outcome& out, std::ostream& os) {
  os << Format("sluice harness: Dify-like burst, %s scope, %.0f s of scenario time, %.0f req/s base, "
               "x%.0f burst from %.0f s to %.0f s, hot app %.0f%% of traffic\n",
               s.scope.c_str(), s.seconds, s.base_rps, s.burst_factor, s.burst_start, s.burst_end,
               100 * s.hot_share);
  if (s.scope == "cluster") {
    os << Format("cluster: Redis at %s:%d decides on its own clock, so the run is real time, %.0fx "
                 "compressed (%.1f s); latest arrival handled %.1f ms late; %lld decisions by the "
                 "failure mode\n",
                 s.redis_host.c_str(), s.redis_port, s.time_scale, s.seconds / s.time_scale,
                 1000 * out.max_lag_seconds, (long long)out.failure_mode_decisions);
  }
  os << Format("limits: tenant %lld/s (burst %lld) + %lld/min, %lld tokens/min; app %lld in "
               "flight; provider shaped to %lld/s (burst %lld, max wait %.1f s)\n\n",
               (long long)s.tenant_rps, (long long)s.tenant_burst, (long long)s.tenant_per_minute,
               (long long)s.tenant_tokens_per_minute, (long long)s.app_max_in_flight,
               (long long)s.provider_rps, (long long)s.provider_burst, s.provider_max_wait);

  os << Format("%-10s %8s %8s %8s %8s %8s %8s %10s %9s %9s\n", "tenant", "offered", "admitted",
               "rate", "tokens", "conc", "shaping", "tokens", "delay ms", "entitled");
  os << Format("%-10s %8s %8s %8s %8s %8s %8s %10s %9s %9s\n", "", "", "", "refused", "refused",
               "refused", "refused", "used", "mean", "share");
  TenantOutcome total{"total"};
  for (const auto& t : out.tenants) {
    os << Format("%-10s %8lld %8lld %8lld %8lld %8lld %8lld %10lld %9.1f %8.0f%%\n",
                 t.name.c_str(), (long long)t.offered, (long long)t.admitted,
                 (long long)t.refused_rate, (long long)t.refused_tokens,
                 (long long)t.refused_concurrency, (long long)t.refused_shaping,
                 (long long)t.tokens_used,
                 t.admitted ? 1000 * t.shaped_delay_sum / t.admitted : 0.0,
                 t.entitled > 0 ? 100 * t.admitted / t.entitled : 0.0);
    total.offered += t.offered;
    total.admitted += t.admitted;
    total.refused_rate += t.refused_rate;
    total.refused_tokens += t.refused_tokens;
    total.refused_concurrency += t.refused_concurrency;
    total.refused_shaping += t.refused_shaping;
    total.tokens_used += t.tokens_used;
    total.shaped_delay_sum += t.shaped_delay_sum;
  }
  os << Format("%-10s %8lld %8lld %8lld %8lld %8lld %8lld %10lld %9.1f\n", "total",
               (long long)total.offered, (long long)total.admitted, (long long)total.refused_rate,
               (long long)total.refused_tokens, (long long)total.refused_concurrency,
               (long long)total.refused_shaping, (long long)total.tokens_used,
               total.admitted ? 1000 * total.shaped_delay_sum / total.admitted : 0.0);
  os << Format("\nfairness (Jain's index of admitted/entitled over tenants): %.3f\n",
               JainIndex(out.tenants));
  os << Format("provider load, busiest second: %lld offered -> %lld after shaping (limit %lld/s "
               "+ burst %lld)\n\n",
               (long long)out.peak_offered_per_second, (long long)out.peak_provider_per_second,
               (long long)s.provider_rps, (long long)s.provider_burst);

  os << Format("%-38s %10s %9s %9s %9s\n", "decision cost (real time)", "decisions", "mean ns",
               "p50 ns", "p99 ns");
  for (auto& c : out.costs) {
    if (c.nanos.empty()) continue;
    std::sort(c.nanos.begin(), c.nanos.end());
    const double mean =
        std::accumulate(c.nanos.begin(), c.nanos.end(), 0.0) / static_cast<double>(c.nanos.size());
    os << Format("%-38s %10zu %9.0f %9lld %9lld\n", c.object.c_str(), c.nanos.size(), mean,
                 (long long)c.nanos[c.nanos.size() / 2],
                 (long long)c.nanos[c.nanos.size() * 99 / 100]);
  }
  if (s.scope == "cluster") {
    os << Format("(each decision is one Redis round trip on loopback; a release is sent without "
                 "waiting. Each sample minus the %lld ns a pair of steady-clock reads costs.)\n",
                 (long long)out.timer_overhead_nanos);
  } else {
    os << Format("(objects read the virtual ManualClock, an atomic load; a steady-clock read adds "
                 "~30 ns here. Each sample minus the %lld ns a pair of steady-clock reads costs.)\n",
                 (long long)out.timer_overhead_nanos);
  }
}

}  // namespace harness
