// ParsePolicy and LoadPolicyFile (sluice/policy.h): a full policy read into the exact structs,
// the JSON form, every class of error with its line and field path, several errors at once,
// hostile documents (in a child process, so a crash fails the test), and the file loader.
#include "sluice/policy.h"

#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <catch2/catch.hpp>

#include <cstdlib>
#include <fstream>
#include <string>
#include <vector>

#include "absl/strings/str_split.h"
#include "policy/policy_units.h"
#include "test_support.h"

using Catch::Matchers::Contains;
using sluice::ParsePolicy;
using sluice::Policy;
using sluice::Window;
using sluice::WindowKind;
using sluice_test::ErrorOf;
using sluice_test::Value;

namespace {

// The error text of a policy that must not parse.
std::string Errors(const std::string& yaml, const std::string& source = "p.yaml") {
  absl::StatusOr<Policy> policy = ParsePolicy(yaml, source);
  REQUIRE_FALSE(policy.ok());
  CHECK(policy.status().code() == absl::StatusCode::kInvalidArgument);
  return std::string(policy.status().message());
}

// A minimal valid document around some rules.
std::string WithRules(const std::string& rules) { return "version: 1\nrules:\n" + rules; }

std::vector<std::string> Lines(const std::string& text) {
  return absl::StrSplit(text, '\n');
}

}  // namespace

TEST_CASE("a full policy is read into the exact structs", "[policy]") {
  const std::string yaml = R"(version: 1
name: shop
stores:
  - name: r1
    host: 10.0.0.5
    port: 6380
    password: pw
    db: 3
    command_timeout: 10ms
    key_prefix: shop
rules:
  - name: tenant-rpm
    match: {model: [gpt-4o, gpt-4o-mini], header.X-Plan: gold}
    key: [tenant, header.X-App]
    requests: [600/1m, {limit: 10000, per: 1d, burst: 100}]
    tokens: [{limit: 200000, per: 1m}]
    scope: cluster
    store: r1
    on_failure: deny
    mode: strict
    max_keys: 1000
    key_limits:
      - {key: "gold/*", requests: [6000/m, 100000/d]}
      - {key: acme/app, concurrency: 3}
    concurrency: 10
    lease: 90s
  - name: logins
    match:
      any_of:
        - {route: /login, ip: {cidr: [10.0.0.0/8, "2001:db8::/32"], negate: true}}
        - {end_user: {absent: true}}
    key: ip
    window: sliding
    requests: [{limit: 5, per: 10m}]
    scope: host
    shared_name: shop.logins
  - name: pace
    shaping: {rate: 50, per: 1s, burst: 5, max_wait: 250ms}
upstreams:
  - name: oa
    strategy: consistent_hash
    seed: 7
    failures_before_cooldown: 3
    cooldown_rate_limited: 30s
    shared_region: shop.oa
    endpoints:
      - {id: a, weight: 2, max_concurrency: 5, labels: {model: gpt-4o, provider: openai}}
      - {id: b}
fallbacks:
  - name: chain
    models: [gpt-4o]
    targets:
      - {name: first, model: gpt-4o, upstream: oa}
      - {name: big, model: gpt-4o-128k}
    deadline: 60s
    attempt_timeout: 1.5s
    max_retries_per_target: 2
    context_length_target: big
    breaker: {consecutive_failures: 3, open_time: 10s, max_open_time: 1h}
    actions: {timeout: retry_same}
cache:
  max_bytes: 1MiB
  default_ttl: 30m
  shards: 4
  store: r1
  namespace: [tenant, app]
  exclude: [user]
  models: [gpt-4o-mini]
metrics: {per_key_labels: true, shared_region: shop.metrics}
)";
  const Policy p = Value(ParsePolicy(yaml, "shop.yaml"));
  CHECK(p.name == "shop");
  CHECK(p.source == "shop.yaml");

  REQUIRE(p.stores.size() == 1);
  CHECK(p.stores[0].name == "r1");
  CHECK(p.stores[0].line == 4);
  CHECK(p.stores[0].redis.host == "10.0.0.5");
  CHECK(p.stores[0].redis.port == 6380);
  CHECK(p.stores[0].redis.password == "pw");
  CHECK(p.stores[0].redis.db == 3);
  CHECK(p.stores[0].redis.command_timeout == absl::Milliseconds(10));
  CHECK(p.stores[0].redis.connect_timeout == absl::Milliseconds(200));  // default kept
  CHECK(p.stores[0].redis.key_prefix == "shop");

  REQUIRE(p.rules.size() == 3);
  const sluice::RuleSpec& r = p.rules[0];
  CHECK(r.name == "tenant-rpm");
  CHECK(r.line == 12);
  REQUIRE(r.match.any_of.size() == 1);
  REQUIRE(r.match.any_of[0].size() == 2);
  CHECK(r.match.any_of[0][0].attribute == "model");
  CHECK(r.match.any_of[0][0].equals == std::vector<std::string>{"gpt-4o", "gpt-4o-mini"});
  CHECK(r.match.any_of[0][1].attribute == "header.x-plan");  // lower-cased
  CHECK(r.match.any_of[0][1].equals == std::vector<std::string>{"gold"});
  CHECK(r.key == std::vector<std::string>{"tenant", "header.x-app"});
  REQUIRE(r.limits.requests.size() == 2);
  CHECK(r.limits.requests[0].limit == 600);
  CHECK(r.limits.requests[0].period == absl::Minutes(1));
  CHECK(r.limits.requests[0].burst == 0);
  CHECK(r.limits.requests[0].kind == WindowKind::kGcra);
  CHECK(r.limits.requests[1].limit == 10000);
  CHECK(r.limits.requests[1].period == absl::Hours(24));
  CHECK(r.limits.requests[1].burst == 100);
  REQUIRE(r.limits.tokens.size() == 1);
  CHECK(r.limits.tokens[0].limit == 200000);
  CHECK(r.limits.concurrency == 10);
  CHECK(r.lease == absl::Seconds(90));
  CHECK(r.scope == sluice::RuleScope::kCluster);
  CHECK(r.store == "r1");
  CHECK(r.on_failure == sluice::FailureMode::kDeny);
  CHECK(r.mode == sluice::ClusterMode::kStrict);
  CHECK(r.max_keys == 1000);
  CHECK(r.shared_name.empty());
  REQUIRE(r.key_limits.size() == 2);
  CHECK(r.key_limits[0].key == "gold/*");
  CHECK(r.key_limits[0].line == 23);
  REQUIRE(r.key_limits[0].limits.requests.size() == 2);
  CHECK(r.key_limits[0].limits.requests[0].limit == 6000);
  CHECK(r.key_limits[0].limits.requests[1].limit == 100000);
  CHECK(r.key_limits[0].limits.requests[1].period == absl::Hours(24));
  // What an entry leaves out is the rule's.
  CHECK(r.key_limits[0].limits.tokens.size() == 1);
  CHECK(r.key_limits[0].limits.concurrency == 10);
  CHECK(r.key_limits[1].limits.concurrency == 3);
  CHECK(r.key_limits[1].limits.requests.size() == 2);
  CHECK(r.key_limits[1].limits.requests[0].limit == 600);

  const sluice::RuleSpec& logins = p.rules[1];
  REQUIRE(logins.match.any_of.size() == 2);
  REQUIRE(logins.match.any_of[0].size() == 2);
  CHECK(logins.match.any_of[0][0].attribute == "route");
  CHECK(logins.match.any_of[0][1].attribute == "ip");
  CHECK(logins.match.any_of[0][1].cidr == std::vector<std::string>{"10.0.0.0/8", "2001:db8::/32"});
  CHECK(logins.match.any_of[0][1].negate);
  CHECK(logins.match.any_of[1][0].attribute == "end_user");
  CHECK(logins.match.any_of[1][0].absent);
  CHECK(logins.key == std::vector<std::string>{"ip"});
  REQUIRE(logins.limits.requests.size() == 1);
  CHECK(logins.limits.requests[0].kind == WindowKind::kSliding);
  CHECK(logins.limits.requests[0].period == absl::Minutes(10));
  CHECK(logins.scope == sluice::RuleScope::kHost);
  CHECK(logins.shared_name == "shop.logins");
  CHECK(logins.max_keys == 65536);
  CHECK(logins.lease == absl::Minutes(10));

  const sluice::RuleSpec& pace = p.rules[2];
  CHECK(pace.match.any_of.empty());
  CHECK(pace.key.empty());
  CHECK(pace.limits.shaping_rate == 50);
  CHECK(pace.limits.shaping_per == absl::Seconds(1));
  CHECK(pace.limits.shaping_burst == 5);
  CHECK(pace.limits.shaping_max_wait == absl::Milliseconds(250));
  CHECK(pace.scope == sluice::RuleScope::kProcess);

  REQUIRE(p.upstreams.size() == 1);
  const sluice::UpstreamSpec& u = p.upstreams[0];
  CHECK(u.name == "oa");
  CHECK(u.balancer.strategy == sluice::Balancer::Strategy::kConsistentHash);
  CHECK(u.balancer.seed == 7);
  CHECK(u.balancer.failures_before_cooldown == 3);
  CHECK(u.balancer.cooldown_rate_limited == absl::Seconds(30));
  CHECK(u.balancer.cooldown_auth == absl::Seconds(10));  // default kept
  CHECK(u.balancer.shared_region == "shop.oa");
  REQUIRE(u.endpoints.size() == 2);
  CHECK(u.endpoints[0].id == "a");
  CHECK(u.endpoints[0].weight == 2);
  CHECK(u.endpoints[0].max_concurrency == 5);
  CHECK(u.endpoints[0].labels.at("model") == "gpt-4o");
  CHECK(u.endpoints[0].labels.at("provider") == "openai");
  CHECK(u.endpoints[1].weight == 1);

  REQUIRE(p.fallbacks.size() == 1);
  const sluice::FallbackSpec& f = p.fallbacks[0];
  CHECK(f.models == std::vector<std::string>{"gpt-4o"});
  REQUIRE(f.targets.size() == 2);
  CHECK(f.targets[0].name == "first");
  CHECK(f.targets[0].model == "gpt-4o");
  CHECK(f.targets[0].upstream == "oa");
  CHECK(f.targets[1].upstream.empty());
  CHECK(f.options.deadline == absl::Seconds(60));
  CHECK(f.options.attempt_timeout == absl::Milliseconds(1500));
  CHECK(f.options.max_retries_per_target == 2);
  CHECK(f.options.context_length_target == "big");
  CHECK(f.options.breaker.consecutive_failures == 3);
  CHECK(f.options.breaker.open_time == absl::Seconds(10));
  CHECK(f.options.breaker.max_open_time == absl::Hours(1));
  CHECK(f.options.actions.timeout == sluice::FallbackPolicy::Action::kRetrySame);
  CHECK(f.options.actions.rate_limited == sluice::FallbackPolicy::Action::kNextTarget);
  CHECK(f.options.targets.empty());  // filled from `targets` by the Governor

  REQUIRE(p.cache.has_value());
  CHECK(p.cache->options.max_bytes == (int64_t{1} << 20));
  CHECK(p.cache->options.default_ttl == absl::Minutes(30));
  CHECK(p.cache->options.shards == 4);
  CHECK(p.cache->store == "r1");
  CHECK(p.cache->namespace_attributes == std::vector<std::string>{"tenant", "app"});
  CHECK_FALSE(p.cache->share_across_tenants);
  CHECK(p.cache->key.excluded_fields == std::vector<std::string>{"user"});
  CHECK(p.cache->models == std::vector<std::string>{"gpt-4o-mini"});

  CHECK(p.metrics.per_key_labels);
  CHECK(p.metrics.shared_region == "shop.metrics");
}

TEST_CASE("defaults: a policy with one rule and nothing else", "[policy]") {
  const Policy p = Value(ParsePolicy("version: 1\nrules: [{name: r, concurrency: 4}]\n"));
  CHECK(p.name == "sluice");
  CHECK(p.source == "<string>");
  CHECK(p.stores.empty());
  CHECK_FALSE(p.cache.has_value());
  CHECK_FALSE(p.metrics.per_key_labels);
  REQUIRE(p.rules.size() == 1);
  CHECK(p.rules[0].limits.concurrency == 4);
  CHECK(p.rules[0].on_failure == sluice::FailureMode::kLocal);
  CHECK(p.rules[0].max_keys == 65536);
  // A cache section with nothing set takes ResponseCache's and CacheKeyOptions's defaults.
  const Policy c = Value(ParsePolicy("version: 1\ncache: {}\n"));
  REQUIRE(c.cache.has_value());
  CHECK(c.cache->options.max_bytes == (int64_t{256} << 20));
  CHECK(c.cache->namespace_attributes == std::vector<std::string>{"tenant"});
  CHECK(c.cache->key.excluded_fields == sluice::CacheKeyOptions().excluded_fields);
}

TEST_CASE("the JSON form of a policy is accepted", "[policy]") {
  const std::string json = R"({
  "version": 1,
  "name": "j",
  "rules": [
    {"name": "a", "match": {"model": ["m1", "m2"]}, "key": "tenant",
     "requests": [{"limit": 10, "per": "1s"}], "tokens": ["1000/1m"]}
  ],
  "cache": {"max_bytes": 1048576, "share_across_tenants": true, "namespace": []}
})";
  const Policy p = Value(ParsePolicy(json, "p.json"));
  CHECK(p.name == "j");
  REQUIRE(p.rules.size() == 1);
  CHECK(p.rules[0].key == std::vector<std::string>{"tenant"});
  CHECK(p.rules[0].limits.requests[0].limit == 10);
  CHECK(p.rules[0].limits.tokens[0].period == absl::Minutes(1));
  CHECK(p.rules[0].line == 5);
  REQUIRE(p.cache.has_value());
  CHECK(p.cache->options.max_bytes == 1048576);
  CHECK(p.cache->namespace_attributes.empty());
  // JSON errors carry lines too.
  CHECK_THAT(Errors("{\n\"version\": 1,\n\"rules\": [{\"name\": \"a\", \"requests\": [\"0/1s\"]}]\n}",
                    "p.json"),
             Contains("p.json:3: rules[0].requests[0].limit must be > 0, got 0"));
}

TEST_CASE("unknown fields are errors, with the nearest known name", "[policy]") {
  const std::string e = Errors(WithRules("  - name: a\n    reqests: [10/s]\n    concurrency: 1\n"));
  CHECK_THAT(e, Contains("p.yaml:4: rules[0].reqests unknown field (did you mean requests?)"));
  CHECK_THAT(Errors("version: 1\nrulez: []\n"),
             Contains("p.yaml:2: rulez unknown field (did you mean rules?)"));
  // Far from every known name: the list of known names instead.
  CHECK_THAT(Errors("version: 1\nmetrics: {zzzzzzzzzz: 1}\n"),
             Contains("p.yaml:2: metrics.zzzzzzzzzz unknown field (known: per_key_labels, "
                      "shared_region)"));
  CHECK_THAT(Errors(WithRules("  - {name: a, concurrency: 1, shaping: {rate: 1, bust: 2}}\n")),
             Contains("rules[0].shaping.bust unknown field (did you mean burst?)"));
  CHECK_THAT(Errors("version: 1\nbase: &b {a: 1}\nmetrics: {<<: *b}\n"),
             Contains("metrics.<< unknown field (YAML merge keys are not supported"));
  CHECK_THAT(Errors("version: 1\nversion: 1\n"), Contains("p.yaml:2: version is set twice"));
  // A control character in a field name cannot split the one-error-per-line list (found by
  // fuzz_policy).
  const std::string forged = Errors("version: 1\n\"a\\nq.yaml:1: b\": 1\n");
  CHECK(Lines(forged).size() == 1);
  CHECK_THAT(forged, Contains("p.yaml:2: a\\x0aq.yaml:1: b unknown field"));
}

TEST_CASE("wrong types name the expected type", "[policy]") {
  CHECK_THAT(Errors(WithRules("  - name: a\n    concurrency: lots\n")),
             Contains("p.yaml:4: rules[0].concurrency must be an integer, got \"lots\""));
  CHECK_THAT(Errors(WithRules("  - name: a\n    concurrency: [1]\n")),
             Contains("p.yaml:4: rules[0].concurrency must be an integer, got a list"));
  CHECK_THAT(Errors("version: 1\nrules: {name: a}\n"),
             Contains("p.yaml:2: rules must be a list, got a mapping"));
  CHECK_THAT(Errors("version: 1\nmetrics: {per_key_labels: yes}\n"),
             Contains("metrics.per_key_labels must be true or false, got \"yes\""));
  CHECK_THAT(Errors(WithRules("  - name: a\n    concurrency: 1\n    lease: 60\n")),
             Contains("p.yaml:5: rules[0].lease must be a duration like 250ms, 1.5s, 1m, 1h or "
                      "1d, got \"60\" (add a unit: 60s)"));
  CHECK_THAT(Errors(WithRules("  - name: a\n    concurrency: 1\n    scope: global\n")),
             Contains("p.yaml:5: rules[0].scope must be one of process, host, cluster, got "
                      "\"global\""));
  CHECK_THAT(Errors(WithRules("  - name: a\n    requests: [lots]\n")),
             Contains("p.yaml:4: rules[0].requests[0] must be a window like 600/1m or {limit: "
                      "600, per: 1m}, got \"lots\""));
  CHECK_THAT(Errors(WithRules("  - name: a\n    concurrency: 1\n    match: {model: ~}\n")),
             Contains("p.yaml:5: rules[0].match.model must be a value, a list of values, or a "
                      "mapping of tests"));
  CHECK_THAT(Errors(WithRules("  - name: a\n    concurrency: 99999999999999999999\n")),
             Contains("rules[0].concurrency must be an integer >= 0, got "
                      "\"99999999999999999999\""));
}

TEST_CASE("missing and unsupported versions, missing fields", "[policy]") {
  CHECK_THAT(Errors("name: x\n"), Contains("p.yaml:1: version is required"));
  CHECK_THAT(Errors("version: 2\n"), Contains("p.yaml:1: version must be 1 (the only version), got 2"));
  CHECK_THAT(Errors(WithRules("  - concurrency: 1\n")), Contains("p.yaml:3: rules[0].name is required"));
  CHECK_THAT(Errors(WithRules("  - {name: a, requests: [{per: 1s}]}\n")),
             Contains("p.yaml:3: rules[0].requests[0].limit is required"));
  CHECK_THAT(Errors("version: 1\nupstreams: [{name: u}]\n"),
             Contains("p.yaml:2: upstreams[0].endpoints is required"));
  CHECK_THAT(Errors("version: 1\nfallbacks: [{name: f}]\n"),
             Contains("p.yaml:2: fallbacks[0].targets is required"));
}

TEST_CASE("windows are checked: limit, per, burst, sliding rules, token windows", "[policy]") {
  CHECK_THAT(Errors(WithRules("  - name: a\n    requests:\n      - {limit: 0, per: 1s}\n")),
             Contains("p.yaml:5: rules[0].requests[0].limit must be > 0, got 0"));
  CHECK_THAT(Errors(WithRules("  - name: a\n    requests: [0/1s]\n")),
             Contains("p.yaml:4: rules[0].requests[0].limit must be > 0, got 0"));
  CHECK_THAT(Errors(WithRules("  - name: a\n    requests: [10/0s]\n")),
             Contains("rules[0].requests[0].per must be > 0 and at most 366 days, got 0"));
  CHECK_THAT(Errors(WithRules("  - name: a\n    requests: [{limit: 1, per: 367d}]\n")),
             Contains("rules[0].requests[0].per must be in [1ns, 8784h], got 367d"));
  CHECK_THAT(Errors(WithRules("  - name: a\n    requests: [{limit: 1, per: 1s, burst: -1}]\n")),
             Contains("rules[0].requests[0].burst must be >= 0 (0 means the limit), got -1"));
  CHECK_THAT(Errors(WithRules("  - name: a\n    requests: [2000000000/1s]\n")),
             Contains("rules[0].requests[0].limit must be at most one per nanosecond of per"));
  CHECK_THAT(Errors(WithRules("  - name: a\n    window: sliding\n    requests: [1001/1h]\n")),
             Contains("p.yaml:5: rules[0].requests[0].limit must be at most 1000 for a sliding "
                      "window"));
  CHECK_THAT(Errors(WithRules("  - name: a\n    requests:\n      - {limit: 5, per: 1m, burst: 2, "
                              "kind: sliding}\n")),
             Contains("p.yaml:5: rules[0].requests[0].burst must be 0 or the limit for a sliding "
                      "window, got 2"));
  CHECK_THAT(Errors(WithRules("  - name: a\n    tokens:\n      - {limit: 5, per: 1m, kind: "
                              "sliding}\n")),
             Contains("p.yaml:5: rules[0].tokens[0].kind must be gcra"));
  // One kind per rule: the rule's window field, or the first window that names one.
  CHECK_THAT(Errors(WithRules("  - name: a\n    window: gcra\n    requests:\n      - {limit: 5, "
                              "per: 1m, kind: sliding}\n")),
             Contains("p.yaml:6: rules[0].requests[0].kind is sliding but the rule's request "
                      "windows are gcra"));
  CHECK_THAT(Errors(WithRules("  - name: a\n    requests:\n      - {limit: 5, per: 1m, kind: "
                              "sliding}\n      - {limit: 50, per: 1h, kind: gcra}\n")),
             Contains("p.yaml:6: rules[0].requests[1].kind is gcra but the rule's request "
                      "windows are sliding"));
  CHECK_THAT(Errors(WithRules("  - name: a\n    requests: [1/s, 2/s, 3/s, 4/s, 5/s, 6/s, 7/s, 8/s, "
                              "9/s]\n")),
             Contains("rules[0].requests must list 1 to 8 windows, got 9"));
  // A sliding window: every request window takes the kind; burst = limit is allowed.
  const Policy p = Value(ParsePolicy(WithRules(
      "  - name: a\n    requests: [{limit: 5, per: 1m, burst: 5, kind: sliding}, 20/h]\n")));
  CHECK(p.rules[0].limits.requests[1].kind == WindowKind::kSliding);
}

TEST_CASE("rules: at least one limit, unique valid names, scope fields", "[policy]") {
  CHECK_THAT(Errors(WithRules("  - name: a\n    key: tenant\n")),
             Contains("p.yaml:3: rules[0] has no limit: set requests, tokens, concurrency (>= 1) "
                      "or shaping"));
  CHECK_THAT(Errors(WithRules("  - {name: a, concurrency: 0}\n")),
             Contains("p.yaml:3: rules[0] has no limit"));
  CHECK_THAT(Errors(WithRules("  - {name: a, concurrency: 1}\n  - {name: a, concurrency: 2}\n")),
             Contains("p.yaml:4: rules[1].name \"a\" is used twice (names are unique)"));
  CHECK_THAT(Errors(WithRules("  - {name: 'a b', concurrency: 1}\n")),
             Contains("rules[0].name must be 1 to 100 characters of [A-Za-z0-9._-], got \"a b\""));
  CHECK_THAT(Errors(WithRules("  - {name: " + std::string(101, 'x') + ", concurrency: 1}\n")),
             Contains("rules[0].name must be 1 to 100 characters"));
  CHECK_THAT(Errors(WithRules("  - {name: a, concurrency: 1, store: s}\n")),
             Contains("rules[0].store applies only with scope: cluster"));
  CHECK_THAT(Errors(WithRules("  - {name: a, concurrency: 1, scope: cluster, local_share: 2}\n")),
             Contains("p.yaml:3: rules[0].store is required"));
  CHECK_THAT(Errors(WithRules("  - {name: a, concurrency: 1, scope: cluster, store: nope, "
                              "local_share: 2}\n")),
             Contains("p.yaml:3: rules[0].store names no store: \"nope\" is not in stores"));
  CHECK_THAT(Errors("version: 1\nstores: [{name: s}]\nrules:\n  - {name: a, concurrency: 1, "
                    "scope: cluster, store: s}\n"),
             Contains("p.yaml:4: rules[0].local_share is required with on_failure: local"));
  CHECK_THAT(Errors("version: 1\nstores: [{name: s}]\nrules:\n  - {name: a, window: sliding, "
                    "requests: [5/m], scope: cluster, store: s, on_failure: allow, mode: "
                    "leased}\n"),
             Contains("rules[0].mode leased cannot lease a sliding window"));
  CHECK_THAT(Errors(WithRules("  - {name: a, key: [tenant, tenant], concurrency: 1}\n")),
             Contains("rules[0].key[1] names tenant twice"));
  CHECK_THAT(Errors(WithRules("  - {name: a, key: [''], concurrency: 1}\n")),
             Contains("rules[0].key[0] has an empty attribute name"));
}

TEST_CASE("match: filters, any_of, header names, cidr", "[policy]") {
  const Policy p = Value(ParsePolicy(WithRules(
      "  - name: a\n    concurrency: 1\n    match:\n      Header.X-Plan: {prefix: gold, equals: "
      "[a, b]}\n      ip: {cidr: ['::1', 192.168.0.0/16, 10.1.2.3]}\n")));
  const auto& filters = p.rules[0].match.any_of.at(0);
  CHECK(filters[0].attribute == "header.x-plan");
  CHECK(filters[0].prefix == std::vector<std::string>{"gold"});
  CHECK(filters[0].equals == std::vector<std::string>{"a", "b"});
  CHECK(filters[1].cidr.size() == 3);

  CHECK_THAT(Errors(WithRules("  - name: a\n    concurrency: 1\n    match: {model: {cidr: "
                              "10.0.0.0/8}}\n")),
             Contains("p.yaml:5: rules[0].match.model.cidr applies only to the attribute ip"));
  const std::string bad = Errors(WithRules(
      "  - name: a\n    concurrency: 1\n    match:\n      ip:\n        cidr:\n          - "
      "10.0.0.0/33\n          - 300.1.1.1\n          - 2001:db8::/129\n          - 10.0.0.0/x\n"));
  CHECK_THAT(bad, Contains("p.yaml:8: rules[0].match.ip.cidr[0] has a prefix length that is not "
                           "in [0, 32]"));
  CHECK_THAT(bad, Contains("p.yaml:9: rules[0].match.ip.cidr[1] must be an IPv4 or IPv6 address"));
  CHECK_THAT(bad, Contains("p.yaml:10: rules[0].match.ip.cidr[2] has a prefix length that is not "
                           "in [0, 128]"));
  CHECK_THAT(bad, Contains("p.yaml:11: rules[0].match.ip.cidr[3] has a prefix length"));
  CHECK_THAT(Errors(WithRules("  - name: a\n    concurrency: 1\n    match: {header.: x}\n")),
             Contains("rules[0].match.header. names no header"));
  CHECK_THAT(Errors(WithRules("  - name: a\n    concurrency: 1\n    match: {any_of: [], model: "
                              "x}\n")),
             Contains("rules[0].match.any_of must be the only field of match"));
  CHECK_THAT(Errors(WithRules("  - name: a\n    concurrency: 1\n    match: {any_of: []}\n")),
             Contains("rules[0].match.any_of must list at least one group"));
  CHECK_THAT(Errors(WithRules("  - name: a\n    concurrency: 1\n    match: {any_of: [{model: "
                              "x}, {model: {absent: true, equals: y}}]}\n")),
             Contains("rules[0].match.any_of[1].model.absent cannot be combined with equals"));
  CHECK_THAT(Errors(WithRules("  - name: a\n    concurrency: 1\n    match: {Header.A: x, "
                              "header.a: y}\n")),
             Contains("rules[0].match.header.a is filtered twice"));
}

TEST_CASE("key_limits: windows like the rule's, only limits the rule has", "[policy]") {
  CHECK_THAT(Errors(WithRules("  - name: a\n    key: tenant\n    requests: [10/s, 100/m]\n    "
                              "key_limits:\n      - {key: t1, requests: [20/s]}\n")),
             Contains("p.yaml:7: rules[0].key_limits[0].requests must have 2 windows like the "
                      "rule's requests, got 1"));
  CHECK_THAT(Errors(WithRules("  - name: a\n    key: tenant\n    window: sliding\n    requests: "
                              "[10/m]\n    key_limits:\n      - {key: t1, requests: [{limit: 20, "
                              "per: 1m, kind: gcra}]}\n")),
             Contains("rules[0].key_limits[0].requests[0].kind is gcra but the rule's request "
                      "windows are sliding"));
  CHECK_THAT(Errors(WithRules("  - name: a\n    key: tenant\n    requests: [10/s]\n    "
                              "key_limits: [{key: t1, concurrency: 2}]\n")),
             Contains("rules[0].key_limits[0].concurrency replaces the rule's concurrency, and "
                      "the rule sets none"));
  CHECK_THAT(Errors(WithRules("  - name: a\n    requests: [10/s]\n    key_limits: [{key: t1, "
                              "requests: [1/s]}]\n")),
             Contains("rules[0].key_limits needs the rule's key"));
  CHECK_THAT(Errors(WithRules("  - name: a\n    key: tenant\n    requests: [10/s]\n    "
                              "key_limits: [{key: t1}, {key: t2, requests: [1/s]}, {key: t2, "
                              "requests: [2/s]}]\n")),
             Contains("rules[0].key_limits[0] sets no limit"));
  CHECK_THAT(Errors(WithRules("  - name: a\n    key: tenant\n    requests: [10/s]\n    "
                              "key_limits: [{key: t2, requests: [1/s]}, {key: t2, requests: "
                              "[2/s]}]\n")),
             Contains("rules[0].key_limits[1].key \"t2\" is listed twice"));
  // A sliding rule's entries take the rule's kind.
  const Policy p = Value(ParsePolicy(WithRules(
      "  - name: a\n    key: ip\n    window: sliding\n    requests: [5/10m]\n    key_limits: "
      "[{key: 10.0.0.1, requests: [50/10m]}]\n")));
  CHECK(p.rules[0].key_limits[0].limits.requests[0].kind == WindowKind::kSliding);
  CHECK(p.rules[0].key_limits[0].limits.requests[0].limit == 50);
}

TEST_CASE("references: stores, upstreams, fallback targets, cache namespace", "[policy]") {
  CHECK_THAT(Errors("version: 1\nfallbacks:\n  - name: f\n    targets: [{name: t, upstream: "
                    "nope}]\n"),
             Contains("p.yaml:4: fallbacks[0].targets[0].upstream names no upstream: \"nope\""));
  CHECK_THAT(Errors("version: 1\nfallbacks:\n  - name: f\n    targets: [{name: t}]\n    "
                    "context_length_target: big\n"),
             Contains("p.yaml:5: fallbacks[0].context_length_target names no target of the "
                      "chain: \"big\""));
  CHECK_THAT(Errors("version: 1\nfallbacks:\n  - {name: f, targets: [{name: t}]}\n  - {name: g, "
                    "targets: [{name: t}]}\n"),
             Contains("fallbacks[1].models is empty (every model)"));
  CHECK_THAT(Errors("version: 1\nfallbacks:\n  - {name: f, models: [m], targets: [{name: t}]}\n  "
                    "- {name: g, models: m, targets: [{name: t}]}\n"),
             Contains("fallbacks[1].models lists \"m\", which fallbacks \"f\" lists too"));
  CHECK_THAT(Errors("version: 1\ncache: {store: nope}\n"),
             Contains("p.yaml:2: cache.store names no store"));
  CHECK_THAT(Errors("version: 1\ncache:\n  namespace: [app]\n"),
             Contains("p.yaml:3: cache.namespace must include tenant"));
  CHECK(ParsePolicy("version: 1\ncache: {namespace: [app], share_across_tenants: true}\n").ok());
  CHECK_THAT(Errors("version: 1\ncache: {shards: 3, max_bytes: 1KiB}\n"),
             Contains("cache.shards must be a power of two, got 3"));
  CHECK_THAT(Errors("version: 1\ncache: {max_bytes: 1KiB}\n"),
             Contains("cache.max_bytes must be at least 64KiB, got 1024"));
  CHECK_THAT(Errors("version: 1\nupstreams:\n  - {name: u, endpoints: [{id: a}, {id: a}]}\n"),
             Contains("upstreams[0].endpoints[1].id \"a\" is used twice"));
  CHECK_THAT(Errors("version: 1\nupstreams:\n  - {name: u, strategy: random, endpoints: [{id: "
                    "a}]}\n"),
             Contains("upstreams[0].strategy must be one of round_robin, weighted_round_robin"));
  std::string many = "version: 1\nupstreams:\n  - name: u\n    strategy: scored\n    endpoints:\n";
  for (int i = 0; i < 65; ++i) many += "      - {id: e" + std::to_string(i) + "}\n";
  CHECK_THAT(Errors(many), Contains("p.yaml:6: upstreams[0].endpoints must list at most 64 "
                                    "endpoints with strategy prefix_affinity or scored"));
  CHECK_THAT(Errors("version: 1\nupstreams:\n  - {name: u, strategy: least_requests, endpoints: "
                    "[{id: a}]}\n"),
             Contains("got \"least_requests\" (did you mean least_request?)"));
}

TEST_CASE("stores: fields and URL forms", "[policy]") {
  const Policy p = Value(ParsePolicy(
      "version: 1\nstores:\n  - {name: a, url: 'redis://us%40r:p%3Ass@redis.example:6390/4'}\n"
      "  - {name: b, url: 'unix:///run/redis.sock'}\n  - {name: c, url: 'redis://[::1]'}\n"
      "  - {name: d, url: 'redis://:secret@h'}\n"));
  CHECK(p.stores[0].redis.username == "us@r");
  CHECK(p.stores[0].redis.password == "p:ss");
  CHECK(p.stores[0].redis.host == "redis.example");
  CHECK(p.stores[0].redis.port == 6390);
  CHECK(p.stores[0].redis.db == 4);
  CHECK(p.stores[1].redis.unix_socket == "/run/redis.sock");
  CHECK(p.stores[2].redis.host == "::1");
  CHECK(p.stores[2].redis.port == 6379);
  CHECK(p.stores[3].redis.username.empty());
  CHECK(p.stores[3].redis.password == "secret");
  CHECK(p.stores[3].redis.host == "h");

  CHECK_THAT(Errors("version: 1\nstores: [{name: a, url: 'redis://h:99999'}]\n"),
             Contains("stores[0].url port '99999' in 'redis://h:99999' is not a number 1..65535"));
  CHECK_THAT(Errors("version: 1\nstores: [{name: a, url: 'redis://h/x'}]\n"),
             Contains("stores[0].url db 'x' in 'redis://h/x' is not a number >= 0"));
  CHECK_THAT(Errors("version: 1\nstores: [{name: a, url: 'http://h'}]\n"),
             Contains("stores[0].url scheme 'http' in 'http://h' is not one of redis, rediss"));
  CHECK_THAT(Errors("version: 1\nstores: [{name: a, url: 'redis://:Hunter2@h?bogus=1'}]\n"),
             Contains("stores[0].url option 'bogus' in 'redis://:***@h?bogus=1'"));
  CHECK_THAT(Errors("version: 1\nstores: [{name: a, url: 'redis://h', port: 1}]\n"),
             Contains("stores[0].port cannot be set with url"));
  CHECK_THAT(Errors("version: 1\nstores: [{name: a, port: 0, command_timeout: 2h, key_prefix: "
                    "'a{b'}]\n"),
             Contains("stores[0].port must be in [1, 65535], got 0"));
  CHECK_THAT(Errors("version: 1\nstores: [{name: a, command_timeout: 2h}]\n"),
             Contains("stores[0].command_timeout must be in [1ns, 1h], got 2h"));
  CHECK_THAT(Errors("version: 1\nstores: [{name: a, key_prefix: 'a{b'}]\n"),
             Contains("stores[0].key_prefix must be 1 to 100 printable ASCII characters"));
}

TEST_CASE("stores: Sentinel, Cluster and TLS, by fields and by every URL form", "[policy]") {
  const Policy p = Value(ParsePolicy(
      "version: 1\nstores:\n"
      "  - {name: a, url: 'rediss://:pw@h:6380/1?ssl_ca_certs=/ca.pem'}\n"
      "  - {name: b, url: 'redis+sentinel://s1,s2:26380/mymaster/2?sentinel_password=t'}\n"
      "  - {name: c, url: 'rediss+cluster://n1:7000,n2', tls: {server_name: r.example}}\n"
      "  - name: d\n    password: pw\n    sentinel_master: mymaster\n"
      "    sentinels: ['s1:26379', '[fd00::2]']\n"
      "    sentinel_username: w\n    sentinel_password: t\n"
      "    tls: {ca_file: /ca.pem, cert_file: /c.pem, key_file: /k.pem, verify_peer: false}\n"
      "  - {name: e, cluster_nodes: ['n1:7000', 'n2'], tls: true}\n"));
  const sluice::RedisOptions& a = p.stores[0].redis;
  CHECK((a.tls.enabled && a.tls.ca_file == "/ca.pem" && a.host == "h" && a.port == 6380 &&
         a.db == 1 && a.password == "pw"));
  const sluice::RedisOptions& b = p.stores[1].redis;
  CHECK(b.sentinel_master == "mymaster");
  REQUIRE(b.sentinels.size() == 2);
  CHECK((b.sentinels[1].host == "s2" && b.sentinels[1].port == 26380 && b.db == 2));
  CHECK(b.sentinel_password == "t");
  const sluice::RedisOptions& c = p.stores[2].redis;
  CHECK((c.cluster_nodes.size() == 2 && c.cluster_nodes[1].port == 6379 && c.tls.enabled &&
         c.tls.server_name == "r.example"));
  const sluice::RedisOptions& d = p.stores[3].redis;
  REQUIRE(d.sentinels.size() == 2);
  CHECK((d.sentinels[1].host == "fd00::2" && d.sentinels[1].port == 26379));
  CHECK((d.tls.enabled && !d.tls.verify_peer && d.tls.key_file == "/k.pem" &&
         d.sentinel_username == "w"));
  const sluice::RedisOptions& e = p.stores[4].redis;
  CHECK((e.cluster_nodes.size() == 2 && e.cluster_nodes[0].port == 7000 && e.tls.enabled));

  CHECK_THAT(Errors("version: 1\nstores: [{name: a, url: 'redis+cluster://n1/3'}]\n"),
             Contains("stores[0].url path '/3' in 'redis+cluster://n1/3' is not empty or /0"));
  CHECK_THAT(Errors("version: 1\nstores: [{name: a, url: 'redis://h', tls: {ca_file: /c}}]\n"),
             Contains("stores[0].tls needs a rediss url"));
  CHECK_THAT(Errors("version: 1\nstores: [{name: a, url: 'rediss://h', tls: false}]\n"),
             Contains("stores[0].tls cannot be true or false with url"));
  CHECK_THAT(Errors("version: 1\nstores: [{name: a, url: 'rediss://h?ssl_ca_certs=/a', "
                    "tls: {ca_file: /b}}]\n"),
             Contains("stores[0].tls ca_file cannot be set with url"));
  CHECK_THAT(Errors("version: 1\nstores: [{name: a, url: 'redis://h?key_prefix=x', "
                    "key_prefix: y}]\n"),
             Contains("stores[0].key_prefix cannot be set with url"));
  CHECK_THAT(Errors("version: 1\nstores: [{name: a, url: 'redis://h', cluster_nodes: [n]}]\n"),
             Contains("stores[0].cluster_nodes cannot be set with url"));
  CHECK_THAT(Errors("version: 1\nstores: [{name: a, cluster_nodes: ['n:0']}]\n"),
             Contains("stores[0].cluster_nodes [0] must be one host[:port] (an IPv6 host in []): "
                      "port '0' in 'n:0' is not a number 1..65535"));
  CHECK_THAT(Errors("version: 1\nstores: [{name: a, sentinels: ['a,b']}]\n"),
             Contains("stores[0].sentinels [0] must be one host[:port]"));
  CHECK_THAT(Errors("version: 1\nstores: [{name: a, cluster_nodes: [n], db: 2}]\n"),
             Contains("p.yaml:2: stores[0] is inconsistent: db must be 0 with cluster_nodes"));
  CHECK_THAT(Errors("version: 1\nstores: [{name: a, sentinel_master: m}]\n"),
             Contains("stores[0] is inconsistent: sentinels must list 1 to 64 sentinels"));
  CHECK_THAT(Errors("version: 1\nstores: [{name: a, tls: {cert_file: /c}}]\n"),
             Contains("tls.cert_file and tls.key_file must be set together"));
  CHECK_THAT(Errors("version: 1\nstores: [{name: a, tls: {ca_fil: /c}}]\n"),
             Contains("stores[0].tls.ca_fil unknown field (did you mean ca_file?)"));
  CHECK_THAT(Errors("version: 1\nstores: [{name: a, unix_socket: /r.sock, tls: true}]\n"),
             Contains("tls cannot be enabled with unix_socket"));
}

TEST_CASE("every error is reported at once, sorted by line", "[policy]") {
  const std::string e = Errors(R"(version: 1
rules:
  - name: a
    reqests: [10/s]
    concurrency: -1
  - name: a
    requests: [{limit: 0, per: 1s}]
cache: {namespace: [app]}
metrics: {per_key_labels: maybe}
)");
  const std::vector<std::string> lines = Lines(e);
  REQUIRE(lines.size() == 6);
  CHECK(lines[0] == "p.yaml:4: rules[0].reqests unknown field (did you mean requests?)");
  CHECK(lines[1] == "p.yaml:5: rules[0].concurrency must be >= 0, got -1");
  CHECK(lines[2] == "p.yaml:6: rules[1].name \"a\" is used twice (names are unique)");
  CHECK(lines[3] == "p.yaml:7: rules[1].requests[0].limit must be > 0, got 0");
  CHECK_THAT(lines[4], Contains("p.yaml:8: cache.namespace must include tenant"));
  CHECK(lines[5] == "p.yaml:9: metrics.per_key_labels must be true or false, got \"maybe\"");
}

TEST_CASE("units: durations, sizes, the window shorthand", "[policy]") {
  using sluice::internal::ParseByteSize;
  using sluice::internal::ParseDuration;
  using sluice::internal::ParseRateShorthand;
  CHECK(Value(ParseDuration("250ms")) == absl::Milliseconds(250));
  CHECK(Value(ParseDuration("1s")) == absl::Seconds(1));
  CHECK(Value(ParseDuration("1.5s")) == absl::Milliseconds(1500));
  CHECK(Value(ParseDuration("1m")) == absl::Minutes(1));
  CHECK(Value(ParseDuration("1h")) == absl::Hours(1));
  CHECK(Value(ParseDuration("1d")) == absl::Hours(24));
  CHECK(Value(ParseDuration("1h30m")) == absl::Minutes(90));
  CHECK(Value(ParseDuration(".5s")) == absl::Milliseconds(500));
  CHECK(Value(ParseDuration("0")) == absl::ZeroDuration());
  CHECK(Value(ParseDuration("10us")) == absl::Microseconds(10));
  // Digits past the 9th of a fraction are dropped: 0.000000001 of a day is 86.4 us.
  CHECK(Value(ParseDuration("0.0000000019d")) == absl::Nanoseconds(86400));
  for (const char* bad : {"", "1", "s", "1x", "-1s", "1 s", "1.s5", "1..5s", "1mo", "1e3s"}) {
    INFO(bad);
    CHECK_FALSE(ParseDuration(bad).ok());
  }
  CHECK(ParseDuration("99999999999999999999d").status().code() == absl::StatusCode::kOutOfRange);
  CHECK(ParseDuration("100001d").status().code() == absl::StatusCode::kOutOfRange);

  CHECK(Value(ParseByteSize("256MiB")) == (int64_t{256} << 20));
  CHECK(Value(ParseByteSize("1GB")) == 1000000000);
  CHECK(Value(ParseByteSize("65536")) == 65536);
  CHECK(Value(ParseByteSize("64 KiB")) == 65536);
  CHECK_FALSE(ParseByteSize("-1MiB").ok());
  CHECK_FALSE(ParseByteSize("MiB").ok());
  CHECK(ParseByteSize("9999999TiB").status().code() == absl::StatusCode::kOutOfRange);

  auto rate = Value(ParseRateShorthand("600/m"));
  CHECK(rate.limit == 600);
  CHECK(rate.per == absl::Minutes(1));
  rate = Value(ParseRateShorthand("5/10m"));
  CHECK(rate.limit == 5);
  CHECK(rate.per == absl::Minutes(10));
  rate = Value(ParseRateShorthand("200_000/d"));
  CHECK(rate.limit == 200000);
  CHECK(rate.per == absl::Hours(24));
  for (const char* bad : {"600", "/m", "600/", "600/x", "a/m", "600/1", "6 00/m"}) {
    INFO(bad);
    CHECK_THAT(std::string(ParseRateShorthand(bad).status().message()),
               Contains("must be <limit>/<period> like 600/1m or 600/m"));
  }
}

TEST_CASE("hostile documents never crash (each in a child process)", "[policy]") {
  std::string deep_lists(100000, '[');
  std::string deep_maps;
  for (int i = 0; i < 20000; ++i) deep_maps += "{a: ";
  std::string laughs = "version: 1\na: &a [x, x, x, x, x, x, x, x, x, x]\n";
  for (int i = 1; i < 30; ++i) {
    laughs += "l" + std::to_string(i) + ": &l" + std::to_string(i) + " [";
    for (int j = 0; j < 10; ++j) laughs += (j ? ", *" : "*") + (i == 1 ? std::string("a") : "l" + std::to_string(i - 1));
    laughs += "]\n";
  }
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"empty", ""},
      {"blank", "   \n\n# only a comment\n"},
      {"scalar", "42"},
      {"list", "[1, 2]"},
      {"null", "~"},
      {"syntax", "version: 1\nrules: [\n"},
      {"tabs", "version: 1\n\trules: []\n"},
      {"deep lists", deep_lists},
      {"deep maps", deep_maps},
      {"laughs", laughs},
      {"self alias", "version: 1\nrules: &r [*r]\n"},
      {"alias as rule", "version: 1\nx: &w {limit: 1, per: 1s}\nrules: [{name: a, requests: [*w, *w]}]\n"},
      {"huge numbers", "version: 99999999999999999999999999\nrules: [{name: a, requests: "
                       "[99999999999999999999/1s, {limit: 1e400, per: 1e400d}]}]\n"},
      {"non utf-8", "version: 1\nname: \xff\xfe\xc3\x28\nrules: [{name: \"\xe2\x28\xa1\"}]\n"},
      {"nul bytes", std::string("version: 1\nname: a\0b\n", 21)},
      {"two documents", "version: 1\n---\nversion: 1\n"},
      {"stray comma", ","},
      {"stray comma and text", ", \"cache\": {\"max_bytes\": \"1Max0m, burst: 5}]\n"},
      {"open flows", "[:"},
      {"open flow maps", "{# ke\ny{:"},
      {"complex keys", "version: 1\n? [a, b]\n: c\nrules: [{? {x: 1} : 2}]\n"},
      {"tags", "version: !!str 1\nrules: !!map {}\n"},
      {"anchors everywhere", "&a version: &b 1\n"},
  };
  for (const auto& [name, text] : cases) {
    INFO(name);
    const pid_t child = fork();
    REQUIRE(child >= 0);
    if (child == 0) {
      alarm(30);  // a parse that never returns dies of SIGALRM: a failure, not a stuck test
      absl::StatusOr<Policy> policy = ParsePolicy(text, "h.yaml");
      // Every refusal is InvalidArgument naming the source.
      const bool fine = policy.ok() || (policy.status().code() == absl::StatusCode::kInvalidArgument &&
                                        policy.status().message().substr(0, 7) == "h.yaml:");
      _exit(fine ? 0 : 3);
    }
    int status = 0;
    REQUIRE(waitpid(child, &status, 0) == child);
    CHECK(WIFEXITED(status));
    CHECK(WEXITSTATUS(status) == 0);
  }
  // And what they say, in this process.
  CHECK_THAT(Errors(""), Contains("p.yaml:1: is empty"));
  CHECK_THAT(Errors("42"), Contains("p.yaml:1: must be a mapping, got \"42\""));
  CHECK_THAT(Errors("version: 1\nrules: [\n"), Contains("is not valid YAML"));
  CHECK_THAT(Errors("version: 1\n---\nversion: 1\n"),
             Contains("p.yaml:2: starts a second YAML document"));
  // yaml-cpp 0.7's LoadAll never returns on a stray ',' (found by fuzz_policy).
  CHECK_THAT(Errors(", a"), Contains("p.yaml:1: is not valid YAML"));
}

TEST_CASE("LoadPolicyFile reads a file, or the one SLUICE_CONFIG names", "[policy]") {
  char dir_template[] = "/tmp/sluice-policy-XXXXXX";
  REQUIRE(mkdtemp(dir_template) != nullptr);
  const std::string dir = dir_template;
  const std::string path = dir + "/policy.yaml";
  {
    std::ofstream out(path);
    out << "version: 1\nname: from-file\nrules: [{name: a, concurrency: 1}]\n";
  }
  const Policy p = Value(sluice::LoadPolicyFile(path));
  CHECK(p.name == "from-file");
  CHECK(p.source == path);

  // Errors name the file as their source.
  const std::string bad = dir + "/bad.yaml";
  {
    std::ofstream out(bad);
    out << "version: 1\nrules: [{name: a}]\n";
  }
  absl::StatusOr<Policy> parsed = sluice::LoadPolicyFile(bad);
  REQUIRE_FALSE(parsed.ok());
  CHECK_THAT(std::string(parsed.status().message()), Contains(bad + ":2: rules[0] has no limit"));

  const std::string missing = dir + "/missing.yaml";
  absl::StatusOr<Policy> none = sluice::LoadPolicyFile(missing);
  CHECK(none.status().code() == absl::StatusCode::kNotFound);
  CHECK_THAT(std::string(none.status().message()), Contains(missing));

  absl::StatusOr<Policy> directory = sluice::LoadPolicyFile(dir);
  CHECK(directory.status().code() == absl::StatusCode::kFailedPrecondition);
  CHECK_THAT(std::string(directory.status().message()), Contains(dir));

  // The environment variable, set and unset.
  const char* saved = std::getenv("SLUICE_CONFIG");
  const std::string saved_value = saved != nullptr ? saved : "";
  REQUIRE(setenv("SLUICE_CONFIG", path.c_str(), 1) == 0);
  CHECK(Value(sluice::LoadPolicyFile()).name == "from-file");
  REQUIRE(setenv("SLUICE_CONFIG", "", 1) == 0);
  absl::StatusOr<Policy> empty = sluice::LoadPolicyFile();
  CHECK(empty.status().code() == absl::StatusCode::kNotFound);
  CHECK_THAT(std::string(empty.status().message()), Contains("SLUICE_CONFIG is not set"));
  REQUIRE(unsetenv("SLUICE_CONFIG") == 0);
  CHECK(sluice::LoadPolicyFile().status().code() == absl::StatusCode::kNotFound);
  REQUIRE(setenv("SLUICE_CONFIG", missing.c_str(), 1) == 0);
  absl::StatusOr<Policy> from_env_missing = sluice::LoadPolicyFile();
  CHECK(from_env_missing.status().code() == absl::StatusCode::kNotFound);
  CHECK_THAT(std::string(from_env_missing.status().message()), Contains(missing));
  if (saved != nullptr) {
    setenv("SLUICE_CONFIG", saved_value.c_str(), 1);
  } else {
    unsetenv("SLUICE_CONFIG");
  }

  std::remove(path.c_str());
  std::remove(bad.c_str());
  rmdir(dir.c_str());
}
