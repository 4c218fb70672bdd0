// A policy's upstream with `store:` (issues 15 and 17): its balancer's cooldowns are shared
// through Redis by every Governor that runs the same policy, on any host.
#include "sluice/governor.h"

#include <string>

#include <catch2/catch.hpp>

#include "local_redis.h"
#include "sluice/policy.h"
#include "test_support.h"

using sluice::Admission;
using sluice::Attribute;
using sluice::AttemptOutcome;
using sluice::Governor;
using sluice_test::Value;

namespace {

std::string PolicyText(int port, const std::string& extra = "") {
  return "version: 1\n"
         "stores:\n"
         "  - name: main\n"
         "    port: " + std::to_string(port) + "\n"
         "    command_timeout: 2s\n"
         "upstreams:\n"
         "  - name: openai-keys\n"
         "    strategy: round_robin\n"
         "    store: main\n" + extra +
         "    endpoints:\n"
         "      - id: key-1\n"
         "      - id: key-2\n"
         "fallbacks:\n"
         "  - name: gpt\n"
         "    models: [gpt-4o]\n"
         "    targets:\n"
         "      - {name: primary, model: gpt-4o, upstream: openai-keys}\n";
}

// The endpoint the next call's first attempt goes to.
std::string FirstPick(Governor& g, const AttemptOutcome& outcome = {.http_status = 200}) {
  Attribute attributes[] = {{"tenant", "t"}, {"model", "gpt-4o"}};
  Admission a = g.Admit({.attributes = attributes});
  REQUIRE(a.allowed());
  auto call = Value(a.BeginCall());
  if (call.step().kind != sluice::FallbackPolicy::Step::Kind::kAttempt) return "";
  const std::string id(call.step().endpoint_id);
  call.Next(outcome);
  return id;
}

}  // namespace

TEST_CASE("a policy upstream with a store shares its cooldowns between governors") {
  LocalRedis redis;
  sluice::Policy policy = Value(sluice::ParsePolicy(PolicyText(redis.port())));
  REQUIRE(policy.upstreams[0].store == "main");
  auto one = Value(Governor::Create(policy));
  auto two = Value(Governor::Create(policy));
  // one's call on some key is rate limited: that key cools down for both
  const std::string limited = FirstPick(*one, {.http_status = 429});
  REQUIRE(!limited.empty());
  // two reads the shared holds within its refresh interval (250 ms, real time: a steady clock)
  bool avoided = false;
  for (int i = 0; i < 300 && !avoided; ++i) {
    int other = 0;
    for (int k = 0; k < 4; ++k) other += FirstPick(*two) != limited;
    avoided = other == 4;
    if (!avoided) usleep(10'000);
  }
  CHECK(avoided);
}

TEST_CASE("an upstream's store, redis_name and redis_refresh are checked by name") {
  auto error = [](const std::string& text) {
    absl::StatusOr<sluice::Policy> p = sluice::ParsePolicy(text);
    return p.ok() ? std::string() : std::string(p.status().message());
  };
  CHECK(error(PolicyText(6379)).empty());
  CHECK(error(PolicyText(6379, "    redis_name: fleet\n    redis_refresh: 100ms\n")).empty());
  std::string text = PolicyText(6379);
  text.replace(text.find("store: main"), 11, "store: nope");
  CHECK(error(text).find("upstreams[0].store") != std::string::npos);
  CHECK(error(PolicyText(6379, "    redis_name: \"a b\"\n")).find("redis_name") != std::string::npos);
  CHECK(error(PolicyText(6379, "    redis_refresh: 0s\n")).find("redis_refresh") != std::string::npos);
  std::string no_store = PolicyText(6379, "    redis_name: fleet\n");
  no_store.replace(no_store.find("    store: main\n"), 16, "");
  CHECK(error(no_store).find("applies only with store") != std::string::npos);
}
