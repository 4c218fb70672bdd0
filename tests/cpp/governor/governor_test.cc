// The Governor's call path, with policies built in code (the YAML form is the parser's test):
// matching, keys, all-or-none admission, headers, settle, cache namespaces, fallback, reload.
#include "sluice/governor.h"

#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <string>
#include <vector>

#include <catch2/catch.hpp>

#include "test_support.h"

namespace {

using sluice::Admission;
using sluice::Attribute;
using sluice::Governor;
using sluice::ManualClock;
using sluice::Policy;
using sluice::RuleSpec;
using sluice::Window;
using sluice_test::Value;

RuleSpec Rule(std::string name, std::vector<std::string> key) {
  RuleSpec rule;
  rule.name = std::move(name);
  rule.key = std::move(key);
  return rule;
}

sluice::AttributeFilter Equals(std::string attribute, std::vector<std::string> values) {
  sluice::AttributeFilter f;
  f.attribute = std::move(attribute);
  f.equals = std::move(values);
  return f;
}

Admission AdmitTenant(Governor& g, std::string_view tenant, std::string_view model = "gpt-4o",
                      std::string_view body = {}, int64_t tokens = -1) {
  Attribute attributes[] = {{"tenant", tenant}, {"model", model}};
  return g.Admit({.attributes = attributes, .body = body, .token_estimate = tokens});
}

TEST_CASE("a rule applies to the requests its match selects, keyed by its attributes") {
  ManualClock clock;
  Policy policy;
  RuleSpec rule = Rule("gpt", {"tenant"});
  rule.match.any_of = {{Equals("model", {"gpt-4o", "gpt-4o-mini"})}};
  rule.limits.requests = {Window::PerMinute(2)};
  policy.rules = {rule};
  auto g = Value(Governor::Create(policy, &clock));

  CHECK(AdmitTenant(*g, "a").allowed());
  CHECK(AdmitTenant(*g, "a").allowed());
  Admission third = AdmitTenant(*g, "a");
  CHECK_FALSE(third.allowed());
  CHECK(third.rule() == "gpt");
  CHECK(third.decision().retry_after_nanos > 0);
  CHECK(AdmitTenant(*g, "b").allowed());                 // another key
  CHECK(AdmitTenant(*g, "a", "qwen").allowed());          // not matched
  CHECK(AdmitTenant(*g, "a", "qwen").matched_rules().empty());
  clock.Advance(absl::Seconds(30));
  CHECK(AdmitTenant(*g, "a").allowed());
}

TEST_CASE("a key value holding the separator cannot spend another key's limit") {
  ManualClock clock;
  Policy policy;
  RuleSpec rule = Rule("pair", {"tenant", "app"});
  rule.limits.requests = {Window::PerMinute(1)};
  policy.rules = {rule};
  auto g = Value(Governor::Create(policy, &clock));
  Attribute first[] = {{"tenant", "a/b"}, {"app", "c"}};
  Attribute second[] = {{"tenant", "a"}, {"app", "b/c"}};
  CHECK(g->Admit({.attributes = first}).allowed());
  CHECK(g->Admit({.attributes = second}).allowed());
  CHECK_FALSE(g->Admit({.attributes = first}).allowed());
}

TEST_CASE("filters: prefix, CIDR v4 and v6, absent, negate, first-match items") {
  ManualClock clock;
  Policy policy;
  RuleSpec internal = Rule("internal", {});
  sluice::AttributeFilter nets;
  nets.attribute = "ip";
  nets.cidr = {"10.0.0.0/8", "2001:db8::/32"};
  internal.match.any_of = {{nets}};
  internal.limits.requests = {Window::PerMinute(100)};
  RuleSpec anonymous = Rule("anonymous", {});
  sluice::AttributeFilter no_key;
  no_key.attribute = "api_key";
  no_key.absent = true;
  sluice::AttributeFilter not_free;
  not_free.attribute = "header.X-Plan";  // header names compare in lower case
  not_free.prefix = {"free"};
  not_free.negate = true;
  anonymous.match.any_of = {{no_key}, {not_free}};
  anonymous.limits.requests = {Window::PerMinute(100)};
  policy.rules = {internal, anonymous};
  auto g = Value(Governor::Create(policy, &clock));

  auto matched = [&](std::vector<Attribute> attributes) {
    Admission a = g->Admit({.attributes = attributes});
    std::vector<std::string> names(a.matched_rules().begin(), a.matched_rules().end());
    return names;
  };
  using Names = std::vector<std::string>;
  CHECK(matched({{"ip", "10.1.2.3"}, {"api_key", "k"}, {"header.x-plan", "free-tier"}}) ==
        Names{"internal"});
  CHECK(matched({{"ip", "11.1.2.3"}, {"api_key", "k"}, {"header.x-plan", "free"}}).empty());
  CHECK(matched({{"ip", "2001:db8::7"}, {"api_key", "k"}, {"header.x-plan", "gold"}}) ==
        (Names{"internal", "anonymous"}));
  CHECK(matched({{"ip", "not an address"}}) == Names{"anonymous"});
  CHECK(matched({{"ip", "2001:db9::1"}, {"api_key", "k"}}) == Names{"anonymous"});
}

TEST_CASE("a refusal by one rule charges none of the others") {
  ManualClock clock;
  Policy policy;
  RuleSpec tenant = Rule("tenant", {"tenant"});
  tenant.limits.requests = {Window::PerMinute(3)};
  tenant.limits.tokens = {Window::PerMinute(1000)};
  RuleSpec app = Rule("app", {"app"});
  app.limits.concurrency = 1;
  policy.rules = {tenant, app};
  auto g = Value(Governor::Create(policy, &clock));

  Attribute attributes[] = {{"tenant", "t"}, {"app", "a"}};
  Admission held = g->Admit({.attributes = attributes, .token_estimate = 400});
  REQUIRE(held.allowed());
  for (int i = 0; i < 10; ++i) {
    Admission refused = g->Admit({.attributes = attributes, .token_estimate = 400});
    CHECK_FALSE(refused.allowed());
    CHECK(refused.rule() == "app");
  }
  held.Cancel();  // tokens back too
  // Had the refusals charged the tenant's windows, these would be refused.
  Admission second = g->Admit({.attributes = attributes, .token_estimate = 400});
  CHECK(second.allowed());
  second.Release();
  Admission third = g->Admit({.attributes = attributes, .token_estimate = 400});
  CHECK(third.allowed());
  third.Release();
  CHECK_FALSE(g->Admit({.attributes = attributes, .token_estimate = 400}).allowed());
}

TEST_CASE("token windows reserve an estimate and settle the usage") {
  ManualClock clock;
  Policy policy;
  RuleSpec rule = Rule("tpm", {"tenant"});
  rule.limits.tokens = {Window::PerMinute(100)};
  policy.rules = {rule};
  auto g = Value(Governor::Create(policy, &clock));

  Admission first = AdmitTenant(*g, "t", "m", {}, 60);
  REQUIRE(first.allowed());
  CHECK(first.token_estimate() == 60);
  CHECK_FALSE(AdmitTenant(*g, "t", "m", {}, 60).allowed());
  sluice::Usage usage;
  usage.total_tokens = 10;
  CHECK(first.Settle(usage).ok());
  CHECK(AdmitTenant(*g, "t", "m", {}, 60).allowed());  // 10 + 60 <= 100
  // Without a caller's estimate the body's prompt and max_tokens are reserved.
  Admission from_body =
      AdmitTenant(*g, "u", "m", R"({"messages":[{"role":"user","content":"hi"}],"max_tokens":50})");
  CHECK(from_body.allowed());
  CHECK(from_body.token_estimate() > 50);
  CHECK(from_body.token_estimate() < 70);
}

TEST_CASE("headers come from the rule closest to refusing") {
  ManualClock clock;
  Policy policy;
  RuleSpec roomy = Rule("roomy", {"tenant"});
  roomy.limits.requests = {Window::PerMinute(100)};
  RuleSpec tight = Rule("tight", {"tenant"});
  tight.limits.requests = {Window::PerMinute(3)};
  policy.rules = {roomy, tight};
  auto g = Value(Governor::Create(policy, &clock));
  Admission a = AdmitTenant(*g, "t");
  REQUIRE(a.allowed());
  CHECK(a.rule() == "tight");
  CHECK(a.decision().remaining == 2);
  bool found = false;
  for (const auto& [name, value] : a.Headers()) {
    if (name == "RateLimit") {
      found = true;
      CHECK(value.find("\"tight\"") != std::string::npos);
    }
  }
  CHECK(found);
}

TEST_CASE("concurrency permits are released when the admission goes") {
  ManualClock clock;
  Policy policy;
  RuleSpec rule = Rule("cap", {"app"});
  rule.limits.concurrency = 2;
  policy.rules = {rule};
  auto g = Value(Governor::Create(policy, &clock));
  Attribute attributes[] = {{"app", "a"}};
  {
    Admission one = g->Admit({.attributes = attributes});
    Admission two = g->Admit({.attributes = attributes});
    CHECK(one.allowed());
    CHECK(two.allowed());
    CHECK_FALSE(g->Admit({.attributes = attributes}).allowed());
    Admission moved = std::move(two);
    CHECK(moved.allowed());
    CHECK_FALSE(g->Admit({.attributes = attributes}).allowed());
  }
  CHECK(g->Admit({.attributes = attributes}).allowed());
}

TEST_CASE("the cache is namespaced by tenant unless the policy shares answers") {
  ManualClock clock;
  Policy policy;
  policy.cache.emplace();
  policy.cache->options.max_bytes = 1 << 20;
  auto g = Value(Governor::Create(policy, &clock));
  std::string body = R"({"model":"m","messages":[{"role":"user","content":"2+2?"}]})";
  Admission a = AdmitTenant(*g, "a", "m", body);
  CHECK(a.CachedAnswer() == nullptr);
  CHECK(a.StoreAnswer({.body = std::string("4")}));
  CHECK(AdmitTenant(*g, "a", "m", body).CachedAnswer() != nullptr);
  CHECK(AdmitTenant(*g, "b", "m", body).CachedAnswer() == nullptr);

  policy.cache->namespace_attributes = {"app"};
  absl::StatusOr<std::unique_ptr<Governor>> unsafe = Governor::Create(policy, &clock);
  REQUIRE_FALSE(unsafe.ok());
  CHECK(std::string(unsafe.status().message()).find("tenant") != std::string::npos);
  policy.cache->share_across_tenants = true;
  CHECK(Governor::Create(policy, &clock).ok());
}

TEST_CASE("BeginCall runs the chain for the request's model, with balancer picks") {
  ManualClock clock;
  Policy policy;
  sluice::UpstreamSpec upstream;
  upstream.name = "openai";
  upstream.endpoints = {{.id = "key-1"}, {.id = "key-2"}};
  policy.upstreams = {upstream};
  sluice::FallbackSpec chain;
  chain.name = "gpt";
  chain.models = {"gpt-4o"};
  chain.targets = {{"primary", "gpt-4o", "openai"}, {"backup", "qwen-max", ""}};
  policy.fallbacks = {chain};
  auto g = Value(Governor::Create(policy, &clock));

  Admission a = AdmitTenant(*g, "t", "gpt-4o");
  auto call = Value(a.BeginCall());
  CHECK(call.step().kind == sluice::FallbackPolicy::Step::Kind::kAttempt);
  CHECK(call.step().target == "primary");
  CHECK((call.step().endpoint_id == "key-1" || call.step().endpoint_id == "key-2"));
  Admission other = AdmitTenant(*g, "t", "claude");
  CHECK(other.BeginCall().status().code() == absl::StatusCode::kNotFound);
}

TEST_CASE("Reload keeps unchanged rules' state, restarts changed ones, refuses bad policies") {
  ManualClock clock;
  Policy policy;
  RuleSpec rule = Rule("rpm", {"tenant"});
  rule.limits.requests = {Window::PerMinute(2)};
  policy.rules = {rule};
  auto g = Value(Governor::Create(policy, &clock));
  Admission kept_alive = AdmitTenant(*g, "t");
  CHECK(AdmitTenant(*g, "t").allowed());

  // Same rule, another rule added and a match change: the state stays (still spent).
  Policy same = policy;
  same.rules[0].match.any_of = {{Equals("model", {"gpt-4o"})}};
  RuleSpec extra = Rule("extra", {});
  extra.limits.requests = {Window::PerMinute(1000)};
  same.rules.push_back(extra);
  REQUIRE(g->Reload(same).ok());
  CHECK_FALSE(AdmitTenant(*g, "t").allowed());

  // A bad policy changes nothing.
  Policy bad = same;
  bad.rules[1].limits.requests = {Window::PerMinute(0)};
  bad.source = "policy.yaml";
  bad.rules[1].line = 17;
  absl::Status refused = g->Reload(bad);
  REQUIRE_FALSE(refused.ok());
  CHECK(std::string(refused.message()).find("policy.yaml:17: rules[1] (extra)") !=
        std::string::npos);
  CHECK(std::string(refused.message()).find("limit") != std::string::npos);
  CHECK_FALSE(AdmitTenant(*g, "t").allowed());

  // New limits: fresh state.
  Policy changed = same;
  changed.rules[0].limits.requests = {Window::PerMinute(3)};
  REQUIRE(g->Reload(changed).ok());
  CHECK(AdmitTenant(*g, "t").allowed());
  // The admission from before every reload still releases safely (its objects live on).
  kept_alive.Release();
  g.reset();
  CHECK(kept_alive.allowed());
}

TEST_CASE("Create names the rule, its line and the field") {
  ManualClock clock;
  Policy policy;
  policy.source = "p.yaml";
  RuleSpec empty = Rule("nothing", {});
  empty.line = 4;
  policy.rules = {empty};
  absl::StatusOr<std::unique_ptr<Governor>> g = Governor::Create(policy, &clock);
  REQUIRE_FALSE(g.ok());
  CHECK(std::string(g.status().message()).find("p.yaml:4: rules[0] (nothing)") !=
        std::string::npos);
  RuleSpec dup = Rule("nothing", {});
  dup.limits.concurrency = 1;
  policy.rules = {dup, dup};
  g = Governor::Create(policy, &clock);
  REQUIRE_FALSE(g.ok());
  CHECK(std::string(g.status().message()).find("used twice") != std::string::npos);
  RuleSpec cluster = Rule("c", {});
  cluster.limits.concurrency = 1;
  cluster.scope = sluice::RuleScope::kCluster;
  cluster.store = "missing";
  policy.rules = {cluster};
  g = Governor::Create(policy, &clock);
  REQUIRE_FALSE(g.ok());
  CHECK(std::string(g.status().message()).find("store names no store") != std::string::npos);
}

TEST_CASE("host scope: every process of the host shares a rule's limit") {
  sluice_test::RegionName region;
  Policy policy;
  policy.name = region.name;
  RuleSpec rule = Rule("rpm", {"tenant"});
  rule.limits.requests = {Window::PerMinute(10)};
  rule.scope = sluice::RuleScope::kHost;
  rule.max_keys = 64;
  policy.rules = {rule};
  auto g = Value(Governor::Create(policy));
  pid_t child = fork();
  if (child == 0) {
    int admitted = 0;
    for (int i = 0; i < 6; ++i) admitted += AdmitTenant(*g, "t").allowed() ? 1 : 0;
    _exit(admitted == 6 ? 0 : 1);
  }
  int status = 0;
  REQUIRE(waitpid(child, &status, 0) == child);
  REQUIRE(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == 0);
  int admitted = 0;
  for (int i = 0; i < 6; ++i) admitted += AdmitTenant(*g, "t").allowed() ? 1 : 0;
  CHECK(admitted == 4);
  // The rule's region is named after the policy (plus the rule, the object and a digest).
  int removed = 0;
  for (const auto& entry : std::filesystem::directory_iterator("/dev/shm")) {
    std::string file = entry.path().filename().string();
    if (file.rfind("sluice." + region.name + ".", 0) == 0) {
      removed += sluice::RemoveSharedRegion(file.substr(7)).ok() ? 1 : 0;
    }
  }
  CHECK(removed == 1);
}

}  // namespace

namespace {

// The value of the first sample line starting with `series` (name and labels), or -1.
double Sample(const std::string& text, const std::string& series) {
  size_t at = text.find("\n" + series + " ");
  if (at == std::string::npos) return -1;
  return std::stod(text.substr(at + series.size() + 2));
}

TEST_CASE("metrics: decisions by rule and result, tokens, permits in flight, objects' numbers") {
  ManualClock clock;
  Policy policy;
  RuleSpec rule = Rule("tpm", {"tenant"});
  rule.limits.tokens = {Window::PerMinute(100)};
  rule.limits.concurrency = 5;
  policy.rules = {rule};
  policy.cache.emplace();
  policy.cache->options.max_bytes = 1 << 20;
  auto g = Value(Governor::Create(policy, &clock));
  Admission first = AdmitTenant(*g, "t", "m", {}, 60);
  REQUIRE(first.allowed());
  CHECK_FALSE(AdmitTenant(*g, "t", "m", {}, 60).allowed());
  std::string text = g->MetricsText();
  CHECK(Sample(text, R"(sluice_decisions_total{result="allowed",rule="tpm"})") == 1);
  CHECK(Sample(text, R"(sluice_decisions_total{result="refused",rule="tpm"})") == 1);
  CHECK(Sample(text, R"(sluice_tokens_reserved_total{rule="tpm"})") == 60);
  CHECK(Sample(text, R"(sluice_in_flight{rule="tpm"})") == 1);
  CHECK(Sample(text, "sluice_governor_admit_seconds_count") == 2);
  CHECK(Sample(text, "sluice_cache_misses_total") == 0);
  CHECK(first.Settle(80).ok());
  std::string body = R"({"model":"m","messages":[{"role":"user","content":"hi"}]})";
  clock.Advance(absl::Minutes(2));
  CHECK(AdmitTenant(*g, "t", "m", body, 1).CachedAnswer() == nullptr);
  text = g->MetricsText();
  CHECK(Sample(text, R"(sluice_tokens_settled_total{rule="tpm"})") == 80);
  CHECK(Sample(text, R"(sluice_tokens_over_estimate_total{rule="tpm"})") == 20);
  CHECK(Sample(text, R"(sluice_in_flight{rule="tpm"})") == 0);
  CHECK(Sample(text, "sluice_cache_misses_total") == 1);
  // Keys are not labels unless the policy asks.
  CHECK(text.find("key=") == std::string::npos);
}

TEST_CASE("metrics in host scope: any process renders the host's totals") {
  sluice_test::RegionName region;
  Policy policy;
  policy.metrics.shared_region = region.name;
  RuleSpec rule = Rule("rpm", {"tenant"});
  rule.limits.requests = {Window::PerMinute(1000)};
  policy.rules = {rule};
  auto g = Value(Governor::Create(policy));
  pid_t child = fork();
  if (child == 0) {
    auto mine = Governor::Create(policy);
    if (!mine.ok()) _exit(2);
    for (int i = 0; i < 7; ++i) (void)AdmitTenant(**mine, "c");
    _exit(0);
  }
  int status = 0;
  REQUIRE(waitpid(child, &status, 0) == child);
  REQUIRE(WIFEXITED(status));
  REQUIRE(WEXITSTATUS(status) == 0);
  for (int i = 0; i < 3; ++i) (void)AdmitTenant(*g, "p");
  CHECK(Sample(g->MetricsText(), R"(sluice_decisions_total{result="allowed",rule="rpm"})") == 10);
}

}  // namespace
