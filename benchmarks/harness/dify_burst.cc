#include "dify_burst.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <map>
#include <memory>
#include <optional>
#include <queue>
#include <random>
#include <string>

#include <unistd.h>

#include "sluice/sluice.hpp"

namespace harness {
namespace {

constexpr int64_t kSecond = 1'000'000'000;

int64_t SteadyNanos() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

// Times `fn` on the real clock into `cost`.
template <typename Fn>
auto Timed(DecisionCost& cost, Fn&& fn) {
  const int64_t start = SteadyNanos();
  auto result = fn();
  cost.nanos.push_back(SteadyNanos() - start);
  return result;
}

int64_t TimerOverhead() {
  std::vector<int64_t> samples(10000);
  for (auto& s : samples) {
    const int64_t a = SteadyNanos();
    s = SteadyNanos() - a;
  }
  std::nth_element(samples.begin(), samples.begin() + samples.size() / 2, samples.end());
  return samples[samples.size() / 2];
}

struct InFlight {
  int64_t done_at;
  int tenant;
  sluice::ConcurrencyLimiter::Permit permit;
  sluice::TokenBudget::Reservation reservation;
  int64_t actual_tokens;
};
struct LaterFirst {
  bool operator()(const std::shared_ptr<InFlight>& a, const std::shared_ptr<InFlight>& b) const {
    return a->done_at > b->done_at;
  }
};

}  // namespace

Outcome RunDifyBurst(const Scenario& s) {
  // Virtual time starts at the real steady time: host-scope regions measure from their (steady)
  // creation time, common to every process.
  const int64_t t0 = sluice::Clock::Steady()->NowNanos();
  sluice::ManualClock clock(t0);
  const bool host = s.scope == "host";
  const std::string region = "harness-" + std::to_string(getpid()) + "-";
  auto shared = [&](const char* what) { return host ? region + what : std::string(); };
  sluice::RateLimiter::Options rate_options;
  rate_options.windows = {sluice::Window::PerSecond(s.tenant_rps, s.tenant_burst),
                          sluice::Window::PerMinute(s.tenant_per_minute)};
  rate_options.shared_region = shared("requests");
  auto tenant_limit = *sluice::RateLimiter::Create(rate_options, &clock);
  rate_options.shared_region.clear();
  // The same limits applied to the same arrivals with nothing else in the way: each tenant's
  // entitlement, against which the fairness of the whole pipeline is judged.
  auto entitlement = *sluice::RateLimiter::Create(rate_options, &clock);
  sluice::TokenBudget::Options token_options;
  token_options.windows = {sluice::Window::PerMinute(s.tenant_tokens_per_minute)};
  token_options.shared_region = shared("tokens");
  auto tenant_tokens = *sluice::TokenBudget::Create(token_options, &clock);
  sluice::ConcurrencyLimiter::Options cap_options;
  cap_options.max_in_flight = s.app_max_in_flight;
  cap_options.lease = absl::Minutes(2);
  cap_options.shared_region = shared("in-flight");
  auto app_cap = *sluice::ConcurrencyLimiter::Create(cap_options, &clock);
  sluice::LeakyBucket::Options shape_options;
  shape_options.rate = s.provider_rps;
  shape_options.burst = s.provider_burst;
  shape_options.max_wait = absl::Seconds(s.provider_max_wait);
  shape_options.shared_region = shared("provider");
  auto provider = *sluice::LeakyBucket::Create(shape_options, &clock);

  Outcome out;
  out.timer_overhead_nanos = TimerOverhead();
  out.costs = {{"RateLimiter.Allow (2 windows)", {}},
               {"TokenBudget.Reserve", {}},
               {"ConcurrencyLimiter.TryAcquire", {}},
               {"LeakyBucket.Acquire", {}},
               {"Reservation.Settle + Permit.Release", {}}};
  DecisionCost& rate_cost = out.costs[0];
  DecisionCost& token_cost = out.costs[1];
  DecisionCost& cap_cost = out.costs[2];
  DecisionCost& shape_cost = out.costs[3];
  DecisionCost& finish_cost = out.costs[4];

  std::vector<std::string> tenant_keys, app_keys;
  for (int t = 0; t < s.tenants; ++t) {
    tenant_keys.push_back("tenant-" + std::to_string(t));
    out.tenants.push_back({tenant_keys.back()});
    for (int a = 0; a < s.apps_per_tenant; ++a) {
      app_keys.push_back(tenant_keys.back() + "/app-" + std::to_string(a));
    }
  }

  std::mt19937_64 rng(s.seed);
  std::exponential_distribution<double> unit_gap(1.0);
  std::lognormal_distribution<double> prompt_tokens(std::log(700.0), 0.6);
  std::lognormal_distribution<double> output_tokens(std::log(250.0), 0.5);
  std::uniform_real_distribution<double> uniform(0.0, 1.0);
  std::priority_queue<std::shared_ptr<InFlight>, std::vector<std::shared_ptr<InFlight>>, LaterFirst>
      running;
  std::map<int64_t, int64_t> arrivals_per_second, departures_per_second;

  auto finish_until = [&](int64_t t) {
    while (!running.empty() && running.top()->done_at <= t) {
      std::shared_ptr<InFlight> done = running.top();
      running.pop();
      clock.SetNanos(done->done_at);
      Timed(finish_cost, [&] {
        (void)done->reservation.Settle(done->actual_tokens);
        return done->permit.Release().ok();
      });
      out.tenants[done->tenant].tokens_used += done->actual_tokens;
    }
  };

  double now = 0;
  while (true) {
    const bool bursting = now >= s.burst_start && now < s.burst_end;
    now += unit_gap(rng) / (s.base_rps * (bursting ? s.burst_factor : 1.0));
    if (now >= s.seconds) break;
    const int64_t t = t0 + static_cast<int64_t>(now * kSecond);
    finish_until(t);
    clock.SetNanos(t);
    ++arrivals_per_second[(t - t0) / kSecond];

    // Pick the app: the hot one, or any other uniformly.
    int app = 0;
    if (uniform(rng) >= s.hot_share) app = 1 + static_cast<int>(rng() % (app_keys.size() - 1));
    const int tenant = app / s.apps_per_tenant;
    TenantOutcome& stats = out.tenants[tenant];
    ++stats.offered;
    if (entitlement->Allow(tenant_keys[tenant])) ++stats.entitled;

    const int64_t prompt = static_cast<int64_t>(prompt_tokens(rng));
    const int64_t output = static_cast<int64_t>(output_tokens(rng));
    const int64_t estimate = prompt + 512;  // the request's max_tokens

    const bool rate_ok = Timed(rate_cost, [&] { return tenant_limit->Allow(tenant_keys[tenant]); });
    if (!rate_ok) {
      ++stats.refused_rate;
      continue;
    }
    auto reservation = Timed(token_cost, [&] {
      return *tenant_tokens->Reserve(tenant_keys[tenant], std::min<int64_t>(estimate, 600'000));
    });
    if (!reservation) {
      ++stats.refused_tokens;
      continue;
    }
    auto permit = Timed(cap_cost, [&] { return app_cap->TryAcquire(app_keys[app]); });
    if (!permit) {
      ++stats.refused_concurrency;
      (void)reservation.Cancel();
      continue;
    }
    const sluice::Decision shaped = Timed(shape_cost, [&] { return *provider->Acquire("provider"); });
    if (!shaped.allowed) {
      ++stats.refused_shaping;
      (void)reservation.Cancel();
      continue;  // the permit is released by its destructor
    }
    ++stats.admitted;
    stats.shaped_delay_sum += static_cast<double>(shaped.delay_nanos) / kSecond;
    const int64_t departs = t + shaped.delay_nanos;
    ++departures_per_second[(departs - t0) / kSecond];
    // The LLM call: time to first token plus decoding at ~40 tokens/s.
    const int64_t duration = static_cast<int64_t>((0.4 + output / 40.0) * kSecond);
    running.push(std::make_shared<InFlight>(
        InFlight{departs + duration, tenant, std::move(permit), std::move(reservation),
                 prompt + output}));
  }
  finish_until(std::numeric_limits<int64_t>::max());
  if (host) {
    for (const char* what : {"requests", "tokens", "in-flight", "provider"}) {
      (void)sluice::RemoveSharedRegion(region + what);
    }
  }

  for (auto& [second, n] : arrivals_per_second) out.peak_offered_per_second = std::max(out.peak_offered_per_second, n);
  for (auto& [second, n] : departures_per_second) out.peak_provider_per_second = std::max(out.peak_provider_per_second, n);
  for (auto& c : out.costs) {
    for (auto& n : c.nanos) n = std::max<int64_t>(0, n - out.timer_overhead_nanos);
  }
  return out;
}

}  // namespace harness
