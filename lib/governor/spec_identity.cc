#include "governor/spec_identity.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace sluice {
inline namespace v1 {
namespace internal {
namespace {

void AppendWindows(const std::vector<Window>& windows, std::string* out) {
  for (const Window& w : windows) {
    absl::StrAppend(out, "[", w.limit, "/", absl::ToInt64Nanoseconds(w.period), "/", w.burst, "/",
                    static_cast<int>(w.kind), "]");
  }
  out->push_back(';');
}

std::string Nanos(absl::Duration d) { return absl::StrCat(absl::ToInt64Nanoseconds(d)); }

std::string BreakerIdentity(const CircuitBreaker::Options& b) {
  return absl::StrCat(b.consecutive_failures, ",", b.failure_ratio, ",", b.slow_call_ratio, ",",
                      Nanos(b.slow_call_duration), ",", Nanos(b.window), ",", b.minimum_calls,
                      ",", Nanos(b.open_time), ",", b.open_time_multiplier, ",",
                      Nanos(b.max_open_time), ",", b.half_open_probes);
}

}  // namespace

std::string LimitsIdentity(const RuleLimits& limits) {
  std::string out;
  AppendWindows(limits.requests, &out);
  AppendWindows(limits.tokens, &out);
  absl::StrAppend(&out, limits.concurrency, ";", limits.shaping_rate, "/",
                  Nanos(limits.shaping_per), "/", limits.shaping_burst, "/",
                  Nanos(limits.shaping_max_wait));
  return out;
}

std::string RuleIdentity(const RuleSpec& rule, absl::string_view policy_name) {
  return absl::StrCat(policy_name, "|", rule.name, "|", absl::StrJoin(rule.key, ","), "|",
                      LimitsIdentity(rule.limits), "|", Nanos(rule.lease), "|",
                      static_cast<int>(rule.scope), "|", rule.shared_name, "|", rule.max_keys,
                      "|", rule.store, "|", static_cast<int>(rule.on_failure), "|",
                      rule.local_share, "|", static_cast<int>(rule.mode));
}

std::string StoreIdentity(const StoreSpec& store) {
  const RedisOptions& r = store.redis;
  return absl::StrCat(store.name, "|", r.host, "|", r.port, "|", r.unix_socket, "|", r.username,
                      "|", r.password, "|", r.db, "|", Nanos(r.connect_timeout), "|",
                      Nanos(r.command_timeout), "|", Nanos(r.reconnect_interval), "|",
                      r.key_prefix, "|", reinterpret_cast<uintptr_t>(r.script_clock_for_testing));
}

std::string UpstreamIdentity(const UpstreamSpec& upstream) {
  const Balancer::Options& o = upstream.balancer;
  return absl::StrCat(
      upstream.name, "|", static_cast<int>(o.strategy), "|", o.prefix_hash.block_chars, "/",
      o.prefix_hash.max_blocks, "|", o.kv_capacity_blocks, "|", o.min_shared_affinity_blocks, "|",
      o.imbalance_abs, "/",
      o.imbalance_rel, "|", o.hot_spot_sigmas, "|", o.weights.prefix, "/", o.weights.queue, "/",
      o.weights.kv_cache, "/", o.weights.in_flight, "|", Nanos(o.metrics_max_age), "|",
      o.score_load_slack, "/", Nanos(o.kv_session_half_life), "/", o.kv_full_usage, "|",
      o.load_bound, "/", o.virtual_nodes, "|", o.failures_before_cooldown, "|",
      Nanos(o.cooldown_rate_limited), "/", Nanos(o.cooldown_auth), "/",
      Nanos(o.cooldown_connection), "/", Nanos(o.cooldown_timeout), "/",
      Nanos(o.cooldown_server), "|", o.outlier.consecutive_failures, "/",
      Nanos(o.outlier.base_ejection_time), "/", Nanos(o.outlier.max_ejection_time), "/",
      o.outlier.max_ejection_percent, "|", o.ewma_weight, "|", o.seed, "|", o.shared_region,
      "/", o.shared_max_in_flight, "/", Nanos(o.shared_lease), "|", upstream.store, "/",
      o.redis_name, "/", Nanos(o.redis_refresh));
}

std::string FallbackIdentity(const FallbackSpec& fallback, absl::string_view upstream_identities) {
  const FallbackPolicy::Options& o = fallback.options;
  std::string out = absl::StrCat(fallback.name, "|", absl::StrJoin(fallback.models, ","), "|");
  for (const FallbackSpec::Target& t : fallback.targets) {
    absl::StrAppend(&out, t.name, "/", t.model, "/", t.upstream, ",");
  }
  const FallbackPolicy::Actions& a = o.actions;
  absl::StrAppend(&out, "|", static_cast<int>(a.connect), static_cast<int>(a.timeout),
                  static_cast<int>(a.reset), static_cast<int>(a.rate_limited),
                  static_cast<int>(a.server), static_cast<int>(a.auth),
                  static_cast<int>(a.context_length), static_cast<int>(a.content_filter),
                  static_cast<int>(a.client), "|", o.context_length_target, "|",
                  o.max_retries_per_target, "|", BreakerIdentity(o.breaker), "|",
                  o.retry_budget.ratio, "/", o.retry_budget.min_retries, "|",
                  Nanos(o.backoff_base), "/", Nanos(o.backoff_max), "|", Nanos(o.deadline), "/",
                  Nanos(o.attempt_timeout), "|", upstream_identities);
  return out;
}

std::string CacheIdentity(const CacheSpec& cache, absl::string_view store_identity) {
  const ResponseCache::Options& o = cache.options;
  return absl::StrCat(o.max_bytes, "|", o.shards, "|", Nanos(o.default_ttl), "|",
                      o.protected_share, "|", o.admission, "|", o.store_tool_calls, "|",
                      o.redis_name, "|", store_identity);
}

}  // namespace internal
}  // namespace v1
}  // namespace sluice
