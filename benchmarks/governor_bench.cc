// Google Benchmark: the Governor's whole path per request, the budget issue 16 sets (<= 2 us in
// C++, process scope). Run: build/dev/benchmarks/governor_bench
//
// BM_WholePath/<scope>: Admit against 3 rules (requests per minute keyed by tenant, a token
//                       window keyed by tenant, a concurrency cap keyed by app) with a body of a
//                       short chat request, the cache lookup (a miss), the fallback call's first
//                       step (a balancer pick over 2 endpoints) reported as a success, Settle
//                       with the usage, and the release. 0 = process scope, 1 = host scope.
// BM_AdmitOnly/<scope>: Admit and release, no body (no estimate, no cache), the same 3 rules.
// BM_AdmitNoRuleMatches: a request no rule matches: the floor of the call.
// BM_WholePathUntuned/<scope>/<rules>/<body bytes>: the whole path on a workload the code was not
//                       tuned on: 10 rules of which the same 3 match (TenRules, the same text as
//                       benchmarks/python/bench_governor.py's), and/or a 4 KiB body.
// Keys cycle over 1,000 tenants and 4,000 apps, so the tables are warm but not one line.
#include <benchmark/benchmark.h>

#include <unistd.h>

#include <filesystem>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "sluice/governor.h"
#include "sluice/policy.h"
#include "sluice/shared_region.h"

namespace {

sluice::Policy ThreeRules(bool host, const std::string& name) {
  sluice::Policy policy;
  policy.name = name;
  sluice::RuleSpec rpm;
  rpm.name = "tenant-rpm";
  rpm.key = {"tenant"};
  rpm.match.any_of = {{{.attribute = "model", .equals = {"gpt-4o", "gpt-4o-mini"}}}};
  rpm.limits.requests = {sluice::Window::PerMinute(1'000'000)};
  sluice::RuleSpec tpm;
  tpm.name = "tenant-tpm";
  tpm.key = {"tenant"};
  tpm.limits.tokens = {sluice::Window::PerMinute(int64_t{1} << 34)};
  sluice::RuleSpec apps;
  apps.name = "app-concurrency";
  apps.key = {"app"};
  apps.limits.concurrency = 64;
  for (sluice::RuleSpec* rule : {&rpm, &tpm, &apps}) {
    rule->max_keys = 8192;
    if (host) rule->scope = sluice::RuleScope::kHost;
    policy.rules.push_back(*rule);
  }
  sluice::UpstreamSpec upstream;
  upstream.name = "openai";
  upstream.endpoints = {{.id = "key-1"}, {.id = "key-2"}};
  policy.upstreams = {upstream};
  sluice::FallbackSpec chain;
  chain.name = "chain";
  chain.targets = {{"openai", "gpt-4o", "openai"}, {"backup", "qwen-max", ""}};
  policy.fallbacks = {chain};
  policy.cache.emplace();
  policy.cache->options.max_bytes = 64 << 20;
  return policy;
}

// ThreeRules' 3 rules among 7 that this traffic never matches, in the order bench_governor.py
// gives them (a policy written as an operator would, parsed from YAML).
sluice::Policy TenRules(bool host, const std::string& name) {
  constexpr char kText[] = R"(version: 1
name: NAME
rules:
  - name: claude-rpm
    match: {model: claude-3-5-sonnet}
    key: [tenant]
    requests: [600/1m]
    scope: SCOPE
  - name: zhipu-shaping
    match: {provider: zhipuai}
    key: provider
    shaping: {rate: 50, per: 1s, burst: 10, max_wait: 2s}
    scope: SCOPE
  - name: tenant-rpm
    match: {any_of: [{model: [gpt-4o, gpt-4o-mini]}]}
    key: [tenant]
    requests: [1000000/1m]
    max_keys: 8192
    scope: SCOPE
  - name: login-attempts
    match: {route: /console/api/login}
    key: ip
    window: sliding
    requests: [5/10m]
    scope: SCOPE
  - name: free-plan
    match: {header.x-plan: free}
    key: [tenant]
    requests: [60/1m]
    scope: SCOPE
  - name: tenant-tpm
    key: [tenant]
    tokens: [{limit: 17179869184, per: 1m}]
    max_keys: 8192
    scope: SCOPE
  - name: app-keys
    match: {api_key: {prefix: app-}}
    key: api_key
    requests: [100/1s]
    scope: SCOPE
  - name: glm-concurrency
    match: {any_of: [{model: {prefix: [glm-]}}, {provider: qwen}]}
    key: [tenant]
    concurrency: 8
    scope: SCOPE
  - name: app-concurrency
    key: [app]
    concurrency: 64
    max_keys: 8192
    scope: SCOPE
  - name: vip-tokens
    match: {tenant: [tenant-vip]}
    key: [tenant]
    tokens: [2000000/1m]
    scope: SCOPE
upstreams:
  - name: openai
    endpoints: [{id: key-1}, {id: key-2}]
fallbacks:
  - name: chain
    targets:
      - {name: openai, model: gpt-4o, upstream: openai}
      - {name: backup, model: qwen-max}
cache: {max_bytes: 64MiB}
)";
  const absl::string_view scope = host ? "host" : "process";
  std::string text = absl::StrReplaceAll(kText, {{"NAME", name}, {"SCOPE", scope}});
  return sluice::ParsePolicy(text, "TenRules").value();
}

// A chat request of exactly `size` bytes: a long user message.
std::string BodyOf(size_t size) {
  std::string head = R"({"model":"gpt-4o","messages":[{"role":"system","content":"You are a )"
                     R"(helpful assistant."},{"role":"user","content":")";
  std::string tail = R"("}],"max_tokens":256})";
  std::string words = "Please summarise the attached support ticket and suggest a reply. ";
  std::string filler;
  while (filler.size() < size - head.size() - tail.size()) filler += words;
  filler.resize(size - head.size() - tail.size());
  return head + filler + tail;
}

struct Fixture {
  std::string name = absl::StrCat("bench-", getpid());
  std::unique_ptr<sluice::Governor> governor;
  std::vector<std::string> tenants, apps;
  std::string body = R"({"model":"gpt-4o","messages":[{"role":"system","content":"You are a )"
                     R"(helpful assistant."},{"role":"user","content":"How do I reset my )"
                     R"(password?"}],"max_tokens":256})";
  explicit Fixture(bool host, bool ten_rules = false) {
    governor = sluice::Governor::Create(ten_rules ? TenRules(host, name) : ThreeRules(host, name))
                   .value();
    for (int i = 0; i < 1000; ++i) tenants.push_back(absl::StrCat("tenant-", i));
    for (int i = 0; i < 4000; ++i) apps.push_back(absl::StrCat("app-", i));
  }
  ~Fixture() {
    governor.reset();
    // Host scope: the rules' regions are named after the policy ("<name>.<rule>.<kind>.<digest>").
    std::error_code error;
    for (const auto& entry : std::filesystem::directory_iterator("/dev/shm", error)) {
      std::string file = entry.path().filename().string();
      if (file.rfind("sluice." + name + ".", 0) == 0) {
        (void)sluice::RemoveSharedRegion(file.substr(7));
      }
    }
  }
};

void WholePath(benchmark::State& state, Fixture& f) {
  size_t i = 0;
  for (auto _ : state) {
    const std::string& tenant = f.tenants[i % f.tenants.size()];
    const std::string& app = f.apps[i % f.apps.size()];
    ++i;
    sluice::Attribute attributes[] = {{"tenant", tenant}, {"app", app}, {"model", "gpt-4o"}};
    sluice::Admission admission =
        f.governor->Admit({.attributes = attributes, .body = f.body, .token_estimate = 300});
    if (!admission.allowed()) state.SkipWithError("refused");
    benchmark::DoNotOptimize(admission.CachedAnswer());
    absl::StatusOr<sluice::FallbackPolicy::Call> call = admission.BeginCall();
    call->Next({.http_status = 200});
    (void)admission.Settle(280);
  }
  state.SetItemsProcessed(state.iterations());
}

void BM_WholePath(benchmark::State& state) {
  Fixture f(state.range(0) == 1);
  WholePath(state, f);
}
BENCHMARK(BM_WholePath)->Arg(0)->Arg(1);

void BM_WholePathUntuned(benchmark::State& state) {
  Fixture f(state.range(0) == 1, state.range(1) == 10);
  if (state.range(2) > 0) f.body = BodyOf(static_cast<size_t>(state.range(2)));
  WholePath(state, f);
}
BENCHMARK(BM_WholePathUntuned)
    ->ArgNames({"host", "rules", "body"})
    ->Args({0, 10, 0})
    ->Args({0, 3, 4096})
    ->Args({0, 10, 4096})
    ->Args({1, 10, 0})
    ->Args({1, 3, 4096})
    ->Args({1, 10, 4096});

void BM_AdmitOnly(benchmark::State& state) {
  Fixture f(state.range(0) == 1);
  size_t i = 0;
  for (auto _ : state) {
    const std::string& tenant = f.tenants[i % f.tenants.size()];
    const std::string& app = f.apps[i % f.apps.size()];
    ++i;
    sluice::Attribute attributes[] = {{"tenant", tenant}, {"app", app}, {"model", "gpt-4o"}};
    sluice::Admission admission =
        f.governor->Admit({.attributes = attributes, .token_estimate = 300});
    benchmark::DoNotOptimize(admission.allowed());
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_AdmitOnly)->Arg(0)->Arg(1);

void BM_AdmitNoRuleMatches(benchmark::State& state) {
  sluice::Policy policy;
  sluice::RuleSpec rule;
  rule.name = "never";
  rule.match.any_of = {{{.attribute = "model", .equals = {"none"}}}};
  rule.limits.concurrency = 1;
  policy.rules = {rule};
  auto governor = sluice::Governor::Create(policy).value();
  sluice::Attribute attributes[] = {{"tenant", "t"}, {"model", "gpt-4o"}};
  for (auto _ : state) {
    sluice::Admission admission = governor->Admit({.attributes = attributes});
    benchmark::DoNotOptimize(admission.allowed());
  }
}
BENCHMARK(BM_AdmitNoRuleMatches);

}  // namespace

BENCHMARK_MAIN();
