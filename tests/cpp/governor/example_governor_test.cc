// examples/policy.yaml, built and run: every feature of the example works together, with its
// stores pointed at a redis-server this test starts (cluster-scope rules) and its host regions
// renamed per test process.
#include <filesystem>
#include <string>
#include <vector>

#include <catch2/catch.hpp>

#include "local_redis.h"
#include "sluice/governor.h"
#include "sluice/policy.h"
#include "sluice/shared_region.h"
#include "test_support.h"

namespace {

using sluice::Admission;
using sluice::Attribute;

void RemoveRegionsOf(const std::string& prefix) {
  std::error_code error;
  for (const auto& entry : std::filesystem::directory_iterator("/dev/shm", error)) {
    std::string file = entry.path().filename().string();
    if (file.rfind("sluice." + prefix, 0) == 0) (void)sluice::RemoveSharedRegion(file.substr(7));
  }
}

TEST_CASE("the example policy builds and governs Dify-like requests") {
  LocalRedis redis;
  REQUIRE(redis.Ping());
  sluice::Policy policy = sluice_test::Value(
      sluice::LoadPolicyFile(std::string(SLUICE_SOURCE_DIR) + "/examples/policy.yaml"));
  const std::string unique = "example-" + std::to_string(getpid());
  policy.name = unique;
  for (sluice::StoreSpec& store : policy.stores) {
    store.redis.host = "127.0.0.1";
    store.redis.port = redis.port();
    store.redis.username.clear();
    store.redis.password.clear();
    store.redis.key_prefix = unique;
  }
  for (sluice::RuleSpec& rule : policy.rules) {
    if (!rule.shared_name.empty()) rule.shared_name = unique + "." + rule.name;
  }
  for (sluice::UpstreamSpec& upstream : policy.upstreams) {
    if (!upstream.balancer.shared_region.empty()) {
      upstream.balancer.shared_region = unique + "." + upstream.name;
    }
  }
  policy.metrics.shared_region = unique + ".metrics";
  {
    auto governor = sluice_test::Value(sluice::Governor::Create(policy));
    CHECK(governor->waits_for_redis());

    // The gold tenant's chat request: tenant limits (cluster, its key_limits entry), the app
    // cap (its key_limits entry); cached model? gpt-4o is not cached; the gpt-4o chain.
    Attribute gold[] = {{"tenant", "tenant-gold"}, {"app", "support-bot"},
                        {"model", "gpt-4o"},       {"provider", "openai"},
                        {"route", "/v1/chat"},     {"ip", "10.0.0.7"}};
    Admission a = governor->Admit({.attributes = gold, .token_estimate = 100});
    INFO(a.status().ToString());
    REQUIRE(a.allowed());
    std::vector<std::string> matched(a.matched_rules().begin(), a.matched_rules().end());
    CHECK(matched == (std::vector<std::string>{"tenant-rpm-tpm", "app-concurrency"}));
    auto call = sluice_test::Value(a.BeginCall());
    CHECK(call.step().target == "openai-gpt-4o");
    call.Next({.http_status = 429});  // rate limited: the chain moves on
    CHECK(call.step().target == "azure-gpt-4o");
    call.Next({.http_status = 200});
    CHECK(a.Settle(80).ok());

    // Logins: exactly 5 in any 10 minutes per address (host scope, sliding).
    Attribute login[] = {{"route", "/console/api/login"}, {"ip", "203.0.113.9"}};
    int admitted = 0;
    for (int i = 0; i < 8; ++i) admitted += governor->Admit({.attributes = login}).allowed();
    CHECK(admitted == 5);

    // The app cap: acme/agent may hold 16, another acme app 8.
    std::vector<Admission> held;
    Attribute agent[] = {{"tenant", "acme"}, {"app", "agent"}, {"model", "other"}};
    for (int i = 0; i < 20; ++i) held.push_back(governor->Admit({.attributes = agent}));
    int agent_held = 0;
    for (const Admission& h : held) agent_held += h.allowed();
    CHECK(agent_held == 16);
    Attribute other_app[] = {{"tenant", "acme"}, {"app", "writer"}, {"model", "other"}};
    for (int i = 0; i < 20; ++i) held.push_back(governor->Admit({.attributes = other_app}));
    int writer_held = 0;
    for (size_t i = 20; i < held.size(); ++i) writer_held += held[i].allowed();
    CHECK(writer_held == 8);
    held.clear();

    // The cache: gpt-4o-mini answers are namespaced by tenant and app.
    std::string body = R"({"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}]})";
    Attribute mini[] = {{"tenant", "t1"}, {"app", "a"}, {"model", "gpt-4o-mini"}};
    Admission first = governor->Admit({.attributes = mini, .body = body});
    REQUIRE(first.allowed());
    CHECK(first.CachedAnswer() == nullptr);
    CHECK(first.StoreAnswer({.body = std::string("{\"answer\":\"hello\"}")}));
    CHECK(governor->Admit({.attributes = mini, .body = body}).CachedAnswer() != nullptr);
    Attribute other_tenant[] = {{"tenant", "t2"}, {"app", "a"}, {"model", "gpt-4o-mini"}};
    CHECK(governor->Admit({.attributes = other_tenant, .body = body}).CachedAnswer() == nullptr);

    std::string metrics = governor->MetricsText();
    CHECK(metrics.find(R"(sluice_decisions_total{result="refused",rule="login-attempts"} 3)") !=
          std::string::npos);
    CHECK(metrics.find("sluice_fallback_attempts_total") != std::string::npos);
  }
  RemoveRegionsOf(unique);
}

}  // namespace
