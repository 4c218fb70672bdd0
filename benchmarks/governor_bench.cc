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
// Keys cycle over 1,000 tenants and 4,000 apps, so the tables are warm but not one line.
#include <benchmark/benchmark.h>

#include <unistd.h>

#include <filesystem>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "sluice/governor.h"
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

struct Fixture {
  std::string name = absl::StrCat("bench-", getpid());
  std::unique_ptr<sluice::Governor> governor;
  std::vector<std::string> tenants, apps;
  std::string body = R"({"model":"gpt-4o","messages":[{"role":"system","content":"You are a )"
                     R"(helpful assistant."},{"role":"user","content":"How do I reset my )"
                     R"(password?"}],"max_tokens":256})";
  explicit Fixture(bool host) {
    governor = sluice::Governor::Create(ThreeRules(host, name)).value();
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

void BM_WholePath(benchmark::State& state) {
  Fixture f(state.range(0) == 1);
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
BENCHMARK(BM_WholePath)->Arg(0)->Arg(1);

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
