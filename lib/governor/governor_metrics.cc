#include "governor/governor_metrics.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "governor/attribute_match.h"
#include "governor/governor_snapshot.h"

namespace sluice {
inline namespace v1 {
namespace internal {
namespace {

constexpr int64_t kHostCollectInterval = 1'000'000'000;

std::string S(std::string_view v) { return std::string(v); }

// Shaping delays: 1 ms to 10 s.
std::vector<double> DelayBounds() {
  return {0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10};
}

int64_t BreakerStateValue(CircuitBreaker::State state) {
  switch (state) {
    case CircuitBreaker::State::kClosed: return 0;
    case CircuitBreaker::State::kOpen: return 1;
    case CircuitBreaker::State::kHalfOpen: return 2;
  }
  return 0;
}

}  // namespace

absl::StatusOr<std::unique_ptr<GovernorMetrics>> GovernorMetrics::Create(const MetricsSpec& spec) {
  MetricsRegistry::Options options;
  options.shared_region = spec.shared_region;
  absl::StatusOr<std::shared_ptr<MetricsRegistry>> registry = MetricsRegistry::Create(options);
  if (!registry.ok()) {
    return absl::Status(registry.status().code(),
                        absl::StrCat("metrics: ", registry.status().message()));
  }
  std::unique_ptr<GovernorMetrics> metrics(new GovernorMetrics(
      *std::move(registry), spec.per_key_labels, !spec.shared_region.empty()));
  return metrics;
}

GovernorMetrics::GovernorMetrics(std::shared_ptr<MetricsRegistry> registry, bool per_key_labels,
                                 bool host)
    : registry_(std::move(registry)), per_key_labels_(per_key_labels), host_(host) {
  admit_seconds_ = registry_
                       ->GetHistogram("sluice_governor_admit_seconds",
                                      "Time Governor::Admit took (every matching rule).", {})
                       .value_or(Histogram());
}

RuleSeries GovernorMetrics::ForRule(std::string_view rule) {
  RuleSeries s;
  auto counter = [&](const char* name, const char* help, MetricLabels labels) {
    return registry_->GetCounter(name, help, labels).value_or(Counter());
  };
  const char* decisions = "Admission decisions of a rule: allowed, refused, or error (refused "
                          "by a Redis configuration error or a full key table).";
  s.allowed = counter("sluice_decisions_total", decisions, {{"rule", S(rule)}, {"result", "allowed"}});
  s.refused = counter("sluice_decisions_total", decisions, {{"rule", S(rule)}, {"result", "refused"}});
  s.errors = counter("sluice_decisions_total", decisions, {{"rule", S(rule)}, {"result", "error"}});
  s.tokens_reserved = counter("sluice_tokens_reserved_total",
                              "Tokens reserved by admitted requests (their estimates).",
                              {{"rule", S(rule)}});
  s.tokens_settled = counter("sluice_tokens_settled_total",
                             "Tokens requests used, as settled.", {{"rule", S(rule)}});
  s.tokens_refunded = counter("sluice_tokens_refunded_total",
                              "Reserved tokens given back (used less than estimated, or "
                              "cancelled).", {{"rule", S(rule)}});
  s.tokens_over_estimate = counter("sluice_tokens_over_estimate_total",
                                   "Tokens used beyond the estimate: charged as debt.",
                                   {{"rule", S(rule)}});
  s.in_flight = registry_
                    ->GetGauge("sluice_in_flight", "Concurrency permits held.", {{"rule", S(rule)}})
                    .value_or(Gauge());
  s.shaping_delay = registry_
                        ->GetHistogram("sluice_shaping_delay_seconds",
                                       "Delays shaping asked admitted requests to wait.",
                                       {{"rule", S(rule)}}, DelayBounds())
                        .value_or(Histogram());
  return s;
}

Counter GovernorMetrics::ForKey(std::string_view rule, std::string_view key,
                                std::string_view result) {
  if (!per_key_labels_) return Counter();
  return registry_
      ->GetCounter("sluice_key_decisions_total",
                   "Admission decisions by rule and raw key (metrics.per_key_labels).",
                   {{"rule", S(rule)}, {"key", S(key)}, {"result", S(result)}})
      .value_or(Counter());
}

Counter GovernorMetrics::BreakerTransitions(std::string_view chain, std::string_view target,
                                            std::string_view to) {
  return registry_
      ->GetCounter("sluice_breaker_transitions_total",
                   "Circuit breaker state changes of fallback targets.",
                   {{"chain", S(chain)}, {"target", S(target)}, {"to", S(to)}})
      .value_or(Counter());
}

namespace {

// What a pushed value is remembered by: its series and the object it came from (an object
// replaced by a Reload starts from 0).
std::string PushedId(std::string_view name, const MetricLabels& labels, const void* object) {
  std::string id = absl::StrCat(AbslView(name), "|", reinterpret_cast<uintptr_t>(object));
  for (const auto& [k, v] : labels) absl::StrAppend(&id, "|", k, "=", v);
  return id;
}

}  // namespace

void GovernorMetrics::PushCounter(std::string_view name, std::string_view help,
                                  const MetricLabels& labels, const void* object, int64_t value) {
  int64_t& last = pushed_[PushedId(name, labels, object)];
  int64_t delta = value >= last ? value - last : value;  // a smaller value: a new object
  last = value;
  if (delta <= 0) {
    // Still register the series, so it renders (at 0) before its first event.
    (void)registry_->GetCounter(name, help, labels);
    return;
  }
  if (absl::StatusOr<Counter> c = registry_->GetCounter(name, help, labels); c.ok()) c->Add(delta);
}

void GovernorMetrics::PushGauge(std::string_view name, std::string_view help,
                                const MetricLabels& labels, const void* object, int64_t value) {
  int64_t& last = pushed_[PushedId(name, labels, object)];
  int64_t delta = value - last;
  last = value;
  // Host scope: each process adds its own share, so the series is the host's sum.
  if (absl::StatusOr<Gauge> g = registry_->GetGauge(name, help, labels); g.ok() && delta != 0) {
    g->Add(delta);
  }
}

void GovernorMetrics::Collect(const GovernorSnapshot& snapshot) {
  MutexLock lock(&mutex_);
  collecting_.store(true, std::memory_order_relaxed);
  struct Done {
    std::atomic<bool>* flag;
    ~Done() { flag->store(false, std::memory_order_relaxed); }
  } done{&collecting_};
  for (const CompiledRule& rule : snapshot.rules) {
    const std::string& name = rule.state->spec().name;
    PushCounter("sluice_failure_mode_decisions_total",
                "Cluster-scope decisions made by the failure mode while Redis did not answer.",
                {{"rule", name}}, rule.state.get(), rule.state->failure_mode_decisions());
  }
  for (const auto& [name, store] : snapshot.stores) {
    RedisStats stats = store.store->stats();
    const void* id = store.store.get();
    PushCounter("sluice_redis_commands_total", "Redis commands answered.", {{"store", name}}, id,
                stats.commands);
    PushCounter("sluice_redis_errors_total",
                "Redis commands that failed (connection, timeout, error reply) or were refused "
                "while its breaker was open.",
                {{"store", name}}, id, stats.failures + stats.fast_failures);
    PushCounter("sluice_redis_config_errors_total",
                "Redis commands failed by a configuration error (auth, ACL, a replica, ...).",
                {{"store", name}}, id, stats.config_errors);
    PushGauge("sluice_redis_connected", "1 while the store is connected (summed over processes).",
              {{"store", name}}, id, stats.connected ? 1 : 0);
  }
  const int64_t now = snapshot.clock->NowNanos();
  for (const auto& [name, upstream] : snapshot.upstreams) {
    const void* id = upstream.balancer.get();
    for (const EndpointStats& e : upstream.balancer->Endpoints()) {
      MetricLabels labels = {{"upstream", name}, {"endpoint", e.id}};
      PushCounter("sluice_endpoint_picks_total", "Picks of an upstream endpoint.", labels, id,
                  e.picks);
      PushCounter("sluice_endpoint_errors_total", "Failed requests of an upstream endpoint.",
                  labels, id, e.errors);
      PushGauge("sluice_endpoint_in_flight", "Requests in flight to an upstream endpoint.", labels,
                id, e.in_flight);
      PushGauge("sluice_endpoint_cooling_down",
                "1 while an endpoint cools down after a failure (summed over processes).", labels,
                id, e.cooldown_until_nanos > now ? 1 : 0);
      PushGauge("sluice_endpoint_ejected",
                "1 while outlier detection ejects an endpoint (summed over processes).", labels,
                id, e.ejected_until_nanos > now ? 1 : 0);
    }
  }
  for (const SharedFallback& chain : snapshot.fallbacks) {
    const void* id = chain.policy.get();
    for (const FallbackPolicy::TargetStats& t : chain.policy->Targets()) {
      MetricLabels labels = {{"chain", chain.name}, {"target", t.name}};
      PushCounter("sluice_fallback_attempts_total", "Attempts sent to a fallback target.", labels,
                  id, t.attempts);
      PushCounter("sluice_fallback_failures_total", "Failed attempts of a fallback target.",
                  labels, id, t.failures);
      PushCounter("sluice_fallback_skipped_total",
                  "Calls that skipped a target (breaker open, Retry-After, no endpoint).", labels,
                  id, t.skipped);
      PushGauge("sluice_breaker_state",
                "A fallback target's breaker: 0 closed, 1 open, 2 half-open (summed over "
                "processes).",
                labels, id, BreakerStateValue(t.breaker.state));
    }
  }
  if (snapshot.cache.cache) {
    ResponseCache::Stats stats = snapshot.cache.cache->stats();
    const void* id = snapshot.cache.cache.get();
    auto counter = [&](const char* name, const char* help, int64_t value) {
      PushCounter(name, help, {}, id, value);
    };
    counter("sluice_cache_hits_total", "Response cache hits (in process).", stats.hits);
    counter("sluice_cache_misses_total", "Response cache misses.", stats.misses);
    counter("sluice_cache_merged_total",
            "Misses that waited for another caller's identical upstream call.",
            stats.merged_waits);
    counter("sluice_cache_evictions_total", "Entries evicted for room.", stats.evictions);
    counter("sluice_cache_redis_hits_total", "Answers found in the Redis tier.", stats.redis_hits);
    PushGauge("sluice_cache_bytes", "Bytes the response cache holds.", {}, id, stats.bytes);
    PushGauge("sluice_cache_entries", "Entries the response cache holds.", {}, id, stats.entries);
  }
}

void GovernorMetrics::MaybeCollect(const GovernorSnapshot& snapshot, int64_t now_nanos) {
  if (!host_) return;
  int64_t next = next_collect_nanos_.load(std::memory_order_relaxed);
  if (now_nanos < next) return;
  if (!next_collect_nanos_.compare_exchange_strong(next, now_nanos + kHostCollectInterval,
                                                   std::memory_order_relaxed)) {
    return;  // another thread collects
  }
  Collect(snapshot);
}

std::string GovernorMetrics::Render(const GovernorSnapshot& snapshot) {
  Collect(snapshot);
  return registry_->Render();
}

}  // namespace internal
}  // namespace v1
}  // namespace sluice
