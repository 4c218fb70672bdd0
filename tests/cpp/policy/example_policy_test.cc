// examples/policy.yaml parses (so the example stays valid as the schema moves) and says what its
// comments say.
#include <catch2/catch.hpp>

#include <string>

#include "sluice/policy.h"
#include "test_support.h"

using sluice_test::Value;

TEST_CASE("examples/policy.yaml parses and holds what its comments say", "[policy]") {
  const std::string path = std::string(SLUICE_SOURCE_DIR) + "/examples/policy.yaml";
  const sluice::Policy p = Value(sluice::LoadPolicyFile(path));
  CHECK(p.name == "dify-prod");
  REQUIRE(p.stores.size() == 2);
  CHECK(p.stores[1].redis.host == "cache.internal");
  CHECK(p.stores[1].redis.port == 6380);
  CHECK(p.stores[1].redis.db == 1);

  REQUIRE(p.rules.size() == 5);
  const sluice::RuleSpec& tenant = p.rules[0];
  CHECK(tenant.name == "tenant-rpm-tpm");
  CHECK(tenant.limits.requests.at(0).limit == 600);
  CHECK(tenant.limits.requests.at(0).period == absl::Minutes(1));
  CHECK(tenant.limits.tokens.at(0).limit == 200000);
  CHECK(tenant.scope == sluice::RuleScope::kCluster);
  CHECK(tenant.store == "main");
  CHECK(tenant.local_share == 16);
  REQUIRE(tenant.key_limits.size() == 2);
  CHECK(tenant.key_limits[0].key == "tenant-gold");
  CHECK(tenant.key_limits[0].limits.requests.at(0).limit == 6000);
  CHECK(tenant.key_limits[1].key == "trial-*");
  CHECK(tenant.key_limits[1].limits.tokens.at(0).limit == 20000);

  const sluice::RuleSpec& logins = p.rules[1];
  CHECK(logins.key == std::vector<std::string>{"ip"});
  CHECK(logins.limits.requests.at(0).kind == sluice::WindowKind::kSliding);
  CHECK(logins.limits.requests.at(0).limit == 5);
  CHECK(logins.limits.requests.at(0).period == absl::Minutes(10));
  CHECK(logins.scope == sluice::RuleScope::kHost);

  const sluice::RuleSpec& apps = p.rules[2];
  CHECK(apps.limits.concurrency == 8);
  REQUIRE(apps.key_limits.size() == 3);
  CHECK(apps.key_limits[0].limits.concurrency == 64);

  CHECK(p.rules[3].limits.shaping_rate == 50);
  CHECK(p.rules[3].match.any_of.size() == 2);
  CHECK(p.rules[4].mode == sluice::ClusterMode::kLeased);
  CHECK(p.rules[4].on_failure == sluice::FailureMode::kAllow);
  CHECK(p.rules[4].match.any_of.at(0).at(0).attribute == "header.x-plan");

  REQUIRE(p.upstreams.size() == 2);
  CHECK(p.upstreams[0].endpoints.at(0).labels.at("api_key") == "key-1");
  CHECK(p.upstreams[1].balancer.strategy == sluice::Balancer::Strategy::kWeightedRoundRobin);
  REQUIRE(p.fallbacks.size() == 2);
  CHECK(p.fallbacks[0].targets.size() == 3);
  CHECK(p.fallbacks[0].options.context_length_target == "claude");
  REQUIRE(p.cache.has_value());
  CHECK(p.cache->options.max_bytes == (int64_t{512} << 20));
  CHECK(p.cache->store == "cache-redis");
  CHECK(p.cache->options.redis_name == "dify-answers");
  CHECK(p.metrics.shared_region == "dify-prod.metrics");
}
