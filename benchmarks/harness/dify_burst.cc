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
  sluice::ManualClock manual_clock(t0);
  const bool host = s.scope == "host";
  const bool cluster = s.scope == "cluster";
  // Cluster scope runs in real time, `time_scale` times faster than the scenario's time: one
  // scenario second lasts `second` real nanoseconds. Elsewhere a scenario second is a second.
  const double scale = cluster ? s.time_scale : 1.0;
  const int64_t second = static_cast<int64_t>(kSecond / scale / 1000) * 1000;  // whole us
  const auto seconds = [&](double n) { return absl::Nanoseconds(static_cast<int64_t>(n * second)); };
  const sluice::Clock* clock = cluster ? sluice::Clock::Steady() : &manual_clock;
  const std::string name = "harness-" + std::to_string(getpid()) + "-";
  auto shared = [&](const char* what) { return host ? name + what : std::string(); };
  sluice::ClusterOptions cluster_options;
  if (cluster) {
    sluice::RedisOptions redis;
    redis.host = s.redis_host;
    redis.port = s.redis_port;
    redis.command_timeout = absl::Milliseconds(50);
    cluster_options.store = *sluice::RedisStore::Create(redis);
    cluster_options.local_share = 1;  // one process runs the harness
  }
  auto in_redis = [&](const char* what) {
    sluice::ClusterOptions c = cluster_options;
    c.redis_name = name + what;
    return c;
  };
  sluice::RateLimiter::Options rate_options;
  rate_options.windows = {{s.tenant_rps, seconds(1), s.tenant_burst},
                          {s.tenant_per_minute, seconds(60), 0}};
  // The same limits applied to the same arrivals with nothing else in the way: each tenant's
  // entitlement, against which the fairness of the whole pipeline is judged (always in process).
  auto entitlement = *sluice::RateLimiter::Create(rate_options, clock);
  rate_options.shared_region = shared("requests");
  rate_options.cluster = in_redis("requests");
  auto tenant_limit = *sluice::RateLimiter::Create(rate_options, clock);
  sluice::TokenBudget::Options token_options;
  token_options.windows = {{s.tenant_tokens_per_minute, seconds(60), 0}};
  token_options.shared_region = shared("tokens");
  token_options.cluster = in_redis("tokens");
  auto tenant_tokens = *sluice::TokenBudget::Create(token_options, clock);
  sluice::ConcurrencyLimiter::Options cap_options;
  cap_options.max_in_flight = s.app_max_in_flight;
  cap_options.lease = seconds(120);
  cap_options.shared_region = shared("in-flight");
  cap_options.cluster = in_redis("in-flight");
  auto app_cap = *sluice::ConcurrencyLimiter::Create(cap_options, clock);
  sluice::LeakyBucket::Options shape_options;
  shape_options.rate = s.provider_rps;
  shape_options.per = seconds(1);
  shape_options.burst = s.provider_burst;
  shape_options.max_wait = seconds(s.provider_max_wait);
  shape_options.shared_region = shared("provider");
  shape_options.cluster = in_redis("provider");
  auto provider = *sluice::LeakyBucket::Create(shape_options, clock);
  // Cluster scope: waits (really) until scenario time `t`; elsewhere moves the virtual clock.
  auto advance_to = [&](int64_t t) {
    if (cluster) {
      const int64_t wait = t - sluice::Clock::Steady()->NowNanos();
      if (wait > 0) usleep(static_cast<useconds_t>(wait / 1000));
    } else {
      manual_clock.SetNanos(t);
    }
  };

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
      advance_to(done->done_at);
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
    const int64_t t = t0 + static_cast<int64_t>(now * second);
    finish_until(t);
    advance_to(t);
    if (cluster) {
      const double lag = static_cast<double>(sluice::Clock::Steady()->NowNanos() - t) / kSecond;
      out.max_lag_seconds = std::max(out.max_lag_seconds, lag);
    }
    ++arrivals_per_second[(t - t0) / second];

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
      return *tenant_tokens->TryReserve(tenant_keys[tenant], std::min<int64_t>(estimate, 600'000));
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
    const sluice::Decision shaped = Timed(shape_cost, [&] { return *provider->TryAcquire("provider"); });
    if (!shaped.allowed) {
      ++stats.refused_shaping;
      (void)reservation.Cancel();
      continue;  // the permit is released by its destructor
    }
    ++stats.admitted;
    stats.shaped_delay_sum += static_cast<double>(shaped.delay_nanos) / second;
    // The delay counts from when the bucket decided: in cluster scope, Redis's now (a handled
    // arrival may run a little behind its scenario time).
    const int64_t decided_at = cluster ? sluice::Clock::Steady()->NowNanos() : t;
    const int64_t departs = decided_at + shaped.delay_nanos;
    ++departures_per_second[(departs - t0) / second];
    // The LLM call: time to first token plus decoding at ~40 tokens/s.
    const int64_t duration = static_cast<int64_t>((0.4 + output / 40.0) * second);
    running.push(std::make_shared<InFlight>(
        InFlight{departs + duration, tenant, std::move(permit), std::move(reservation),
                 prompt + output}));
  }
  finish_until(std::numeric_limits<int64_t>::max());
  if (host) {
    for (const char* what : {"requests", "tokens", "in-flight", "provider"}) {
      (void)sluice::RemoveSharedRegion(name + what);
    }
  }
  out.failure_mode_decisions = tenant_limit->failure_mode_decisions() +
                               tenant_tokens->failure_mode_decisions() +
                               app_cap->failure_mode_decisions() +
                               provider->failure_mode_decisions();

  for (auto& [second, n] : arrivals_per_second) out.peak_offered_per_second = std::max(out.peak_offered_per_second, n);
  for (auto& [second, n] : departures_per_second) out.peak_provider_per_second = std::max(out.peak_provider_per_second, n);
  for (auto& c : out.costs) {
    for (auto& n : c.nanos) n = std::max<int64_t>(0, n - out.timer_overhead_nanos);
  }
  return out;
}

}  // namespace harness
