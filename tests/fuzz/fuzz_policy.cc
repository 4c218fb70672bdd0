// Fuzz target: ParsePolicy (sluice/policy.h) on arbitrary bytes (see fuzz_llm_request.cc for how
// it runs). Invariants:
//   * it never crashes, whatever the YAML (deep nesting, aliases, bad UTF-8, huge numbers);
//   * a refusal is InvalidArgument, and every line of it is "<source>:<line>: ..." with a line
//     number >= 1;
//   * parsing is deterministic: the same bytes give the same verdict and message;
//   * an accepted policy keeps the promises of sluice/policy.h: every rule has a limit, its
//     windows are in range (sliding ones within kMaxSlidingLimit, token ones GCRA), rule names
//     are unique, and every key_limits entry has windows matching the rule's.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <set>
#include <string>
#include <string_view>

#include "fuzz_support.h"
#include "sluice/policy.h"

namespace {

void CheckWindow(const sluice::Window& w) {
  FUZZ_CHECK(w.limit > 0);
  FUZZ_CHECK(w.period > absl::ZeroDuration() && w.period <= absl::Hours(24 * 366));
  FUZZ_CHECK(w.burst >= 0);
  if (w.kind == sluice::WindowKind::kSliding) {
    FUZZ_CHECK(w.limit <= sluice::kMaxSlidingLimit);
    FUZZ_CHECK(w.burst == 0 || w.burst == w.limit);
  }
}

void CheckLimits(const sluice::RuleLimits& limits) {
  FUZZ_CHECK(limits.requests.size() <= 8 && limits.tokens.size() <= 8);
  for (const sluice::Window& w : limits.requests) {
    CheckWindow(w);
    FUZZ_CHECK(w.kind == limits.requests.front().kind);
  }
  for (const sluice::Window& w : limits.tokens) {
    CheckWindow(w);
    FUZZ_CHECK(w.kind == sluice::WindowKind::kGcra);
  }
  FUZZ_CHECK(limits.concurrency >= 0);
  FUZZ_CHECK(limits.shaping_rate >= 0 && limits.shaping_burst >= 1);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text = sluice_fuzz::View(data, size);
  const absl::StatusOr<sluice::Policy> policy = sluice::ParsePolicy(text, "f.yaml");
  const absl::StatusOr<sluice::Policy> again = sluice::ParsePolicy(text, "f.yaml");
  FUZZ_CHECK(policy.status() == again.status());
  if (!policy.ok()) {
    FUZZ_CHECK(policy.status().code() == absl::StatusCode::kInvalidArgument);
    const std::string message(policy.status().message());
    size_t start = 0;
    while (start <= message.size()) {
      const size_t end = std::min(message.find('\n', start), message.size());
      const std::string_view line = std::string_view(message).substr(start, end - start);
      FUZZ_CHECK(line.substr(0, 7) == "f.yaml:");
      FUZZ_CHECK(line.size() > 7 && line[7] >= '1' && line[7] <= '9');
      start = end + 1;
    }
    return 0;
  }
  FUZZ_CHECK(again->rules.size() == policy->rules.size());
  std::set<std::string> names;
  for (const sluice::RuleSpec& rule : policy->rules) {
    FUZZ_CHECK(!rule.name.empty() && rule.name.size() <= 100);
    FUZZ_CHECK(names.insert(rule.name).second);
    FUZZ_CHECK(!rule.limits.empty());
    FUZZ_CHECK(rule.line >= 1);
    CheckLimits(rule.limits);
    for (const sluice::KeyLimitsEntry& entry : rule.key_limits) {
      CheckLimits(entry.limits);
      FUZZ_CHECK(entry.limits.requests.size() == rule.limits.requests.size());
      FUZZ_CHECK(entry.limits.tokens.size() == rule.limits.tokens.size());
      for (size_t i = 0; i < entry.limits.requests.size(); ++i) {
        FUZZ_CHECK(entry.limits.requests[i].kind == rule.limits.requests[i].kind);
      }
    }
    if (rule.scope == sluice::RuleScope::kCluster) FUZZ_CHECK(!rule.store.empty());
  }
  for (const sluice::UpstreamSpec& upstream : policy->upstreams) {
    FUZZ_CHECK(!upstream.endpoints.empty());
  }
  for (const sluice::FallbackSpec& fallback : policy->fallbacks) {
    FUZZ_CHECK(!fallback.targets.empty() && fallback.targets.size() <= 64);
  }
  if (policy->cache.has_value() && !policy->cache->share_across_tenants) {
    bool tenant = false;
    for (const std::string& a : policy->cache->namespace_attributes) tenant |= a == "tenant";
    FUZZ_CHECK(tenant);
  }
  return 0;
}
