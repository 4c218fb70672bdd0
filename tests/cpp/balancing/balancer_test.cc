#include "sluice/balancer.h"

#include <catch2/catch.hpp>

#include <sys/wait.h>
#include <unistd.h>

#include <limits>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "balancing/make_balancer.h"
#include "test_support.h"

using sluice::Balancer;
using sluice::EndpointSpec;
using sluice::ManualClock;
using sluice::AttemptOutcome;
using sluice::Failure;
using sluice::PickRequest;
using sluice_test::ErrorOf;
using sluice_test::Value;
using Pick = Balancer::Pick;
using Strategy = Balancer::Strategy;

namespace {

using sluice_test::MakeBalancer;

void AddAll(Balancer& b, std::vector<EndpointSpec> specs) {
  for (const auto& s : specs) REQUIRE(b.AddEndpoint(s).ok());
}

std::string PickId(Balancer& b, const PickRequest& r = {}) {
  Pick p = Value(b.PickEndpoint(r));
  return p.endpoint_id();  // completed as abandoned when p goes
}

std::optional<sluice::EndpointStats> StatsOf(const Balancer& b, const std::string& id) {
  for (auto& s : b.Endpoints()) {
    if (s.id == id) return s;
  }
  return std::nullopt;
}

// A conversation's block hashes: n blocks of a chain identified by `conversation`.
std::vector<uint64_t> Blocks(uint64_t conversation, int n) {
  std::vector<uint64_t> v;
  for (int i = 0; i < n; ++i) v.push_back(conversation * 1000003 + static_cast<uint64_t>(i) + 1);
  return v;
}

}  // namespace

TEST_CASE("round robin cycles, smooth weighted round robin interleaves by weight") {
  ManualClock clock;
  auto rr = MakeBalancer(Strategy::kRoundRobin, &clock);
  AddAll(*rr, {{.id = "a"}, {.id = "b"}, {.id = "c"}});
  std::string seq;
  for (int i = 0; i < 6; ++i) seq += PickId(*rr);
  CHECK(seq == "abcabc");

  auto wrr = MakeBalancer(Strategy::kWeightedRoundRobin, &clock);
  AddAll(*wrr, {{.id = "a", .weight = 5}, {.id = "b"}, {.id = "c"}});
  seq.clear();
  for (int i = 0; i < 7; ++i) seq += PickId(*wrr);
  CHECK(seq == "aabacaa");  // nginx's smooth order for 5:1:1
}

TEST_CASE("least request (power of two) sends new work away from loaded endpoints") {
  ManualClock clock;
  auto b = MakeBalancer(Strategy::kLeastRequest, &clock);
  AddAll(*b, {{.id = "a"}, {.id = "b"}});
  std::vector<Pick> held;
  for (int i = 0; i < 10; ++i) held.push_back(Value(b->PickEndpoint(PickRequest{})));
  std::map<std::string, int> counts;
  for (auto& p : held) counts[p.endpoint_id()]++;
  CHECK(counts["a"] == 5);  // with two endpoints both are always sampled: strict alternation
  CHECK(counts["b"] == 5);
  for (auto& p : held) {
    if (p.endpoint_id() == "a") p.Complete({});
  }
  for (int i = 0; i < 5; ++i) held.push_back(Value(b->PickEndpoint(PickRequest{})));
  CHECK(StatsOf(*b, "a")->in_flight == 5);
  CHECK(StatsOf(*b, "b")->in_flight == 5);
}

TEST_CASE("prefix affinity: a conversation returns to the endpoint that holds its prefix") {
  ManualClock clock;
  auto b = MakeBalancer(Strategy::kPrefixAffinity, &clock);
  AddAll(*b, {{.id = "a"}, {.id = "b"}, {.id = "c"}});
  std::map<uint64_t, std::string> home;
  std::vector<Pick> held;
  for (uint64_t conv = 1; conv <= 6; ++conv) {
    const auto blocks = Blocks(conv, 8);
    held.push_back(Value(b->PickEndpoint({.prefix_blocks = blocks})));
    CHECK(held.back().matched_blocks() == 0);
    home[conv] = held.back().endpoint_id();
  }
  // New conversations spread by load: two each.
  for (const std::string id : {"a", "b", "c"}) CHECK(StatsOf(*b, id)->in_flight == 2);
  for (auto& p : held) p.Complete({});
  // Each conversation's next turn extends its blocks and goes home, whatever the load.
  for (uint64_t conv = 1; conv <= 6; ++conv) {
    const auto blocks = Blocks(conv, 12);
    Pick p = Value(b->PickEndpoint({.prefix_blocks = blocks}));
    CHECK(p.endpoint_id() == home[conv]);
    CHECK(p.matched_blocks() == 8);
    p.Complete({});
  }
}

TEST_CASE("prefix affinity: the imbalance gate and the hot-spot guard overrule the prefix") {
  ManualClock clock;
  Balancer::Options o;
  o.imbalance_abs = 4;
  auto b = MakeBalancer(Strategy::kPrefixAffinity, &clock, o);
  AddAll(*b, {{.id = "a", .max_concurrency = 3}, {.id = "b"}});
  const auto popular = Blocks(7, 6);
  std::vector<Pick> held;
  held.push_back(Value(b->PickEndpoint({.prefix_blocks = popular})));
  const std::string home = held[0].endpoint_id();
  // The same popular prefix, over and over: it stays home until the hot-spot guard (mean + 2σ
  // + 1) or the imbalance gate sends it elsewhere; it never exceeds a's max_concurrency.
  for (int i = 0; i < 9; ++i) held.push_back(Value(b->PickEndpoint({.prefix_blocks = popular})));
  const auto a = *StatsOf(*b, "a");
  const auto bs = *StatsOf(*b, "b");
  CHECK(a.in_flight <= 3);
  CHECK(a.in_flight + bs.in_flight == 10);
  CHECK(std::abs(a.in_flight - bs.in_flight) <= 4);
  // The other endpoint learned the prefix too once it served it: both now hold it.
  CHECK(a.prefix_blocks == 6);
  CHECK(bs.prefix_blocks == 6);
}

TEST_CASE("prefix affinity: the index stays within each endpoint's KV capacity (LRU)") {
  ManualClock clock;
  auto b = MakeBalancer(Strategy::kPrefixAffinity, &clock);
  AddAll(*b, {{.id = "a", .kv_capacity_blocks = 40}});
  for (uint64_t conv = 1; conv <= 30; ++conv) {
    const auto blocks = Blocks(conv, 10);
    Value(b->PickEndpoint({.prefix_blocks = blocks})).Complete({});
    CHECK(StatsOf(*b, "a")->prefix_blocks <= 40);
  }
  // The most recent conversations are still known, the oldest are gone.
  const auto recent = Blocks(30, 10), old = Blocks(1, 10);
  CHECK(Value(b->PickEndpoint({.prefix_blocks = recent})).matched_blocks() == 10);
  CHECK(Value(b->PickEndpoint({.prefix_blocks = old})).matched_blocks() == 0);
}

TEST_CASE("scored: engine metrics steer picks, stale metrics are ignored") {
  ManualClock clock;
  Balancer::Options o;
  o.weights = {.prefix = 0, .queue = 1, .kv_cache = 1, .in_flight = 0};
  auto b = MakeBalancer(Strategy::kScored, &clock, o);
  AddAll(*b, {{.id = "a"}, {.id = "b"}});
  REQUIRE(b->UpdateMetrics("a", "vllm:num_requests_waiting 12\nvllm:num_requests_running 8\n"
                                "vllm:kv_cache_usage_perc 0.95\n").ok());
  REQUIRE(b->UpdateMetrics("b", "vllm:num_requests_waiting 0\nvllm:num_requests_running 3\n"
                                "vllm:kv_cache_usage_perc 0.2\n").ok());
  for (int i = 0; i < 5; ++i) CHECK(PickId(*b) == "b");
  // Between scrapes the balancer's own in-flight count covers what it sent: 20 held picks on b
  // make b's estimated queue 23 > a's 20.
  std::vector<Pick> held;
  for (int i = 0; i < 20; ++i) held.push_back(Value(b->PickEndpoint(PickRequest{})));
  CHECK(StatsOf(*b, "b")->in_flight >= 17);
  held.clear();
  // A bad scrape keeps the previous metrics and names the line.
  CHECK_THAT(std::string(b->UpdateMetrics("a", "vllm:num_requests_waiting oops").message()),
             Catch::Contains("line 1"));
  CHECK(b->UpdateMetrics("zzz", "").code() == absl::StatusCode::kNotFound);
  // Once the scrapes are older than metrics_max_age, only in-flight counts remain: a tie.
  clock.Advance(absl::Seconds(3));
  std::map<std::string, int> counts;
  for (int i = 0; i < 200; ++i) counts[PickId(*b)]++;
  CHECK(counts["a"] > 50);
  CHECK(counts["b"] > 50);
}

TEST_CASE("scored: a huge or non-finite queue on one endpoint does not blind the strategy") {
  ManualClock clock;
  auto b = MakeBalancer(Strategy::kScored, &clock);
  // The busiest endpoint is added first: with NaN scores every pick went to the first candidate.
  AddAll(*b, {{.id = "busy"}, {.id = "idle-1"}, {.id = "idle-2"}});
  REQUIRE(b->UpdateMetrics("busy", "vllm:num_requests_waiting 1e308\n"
                                   "vllm:num_requests_waiting 1e308\n").ok());
  REQUIRE(b->UpdateMetrics("idle-1", "vllm:num_requests_waiting 1\n").ok());
  REQUIRE(b->UpdateMetrics("idle-2", "vllm:num_requests_waiting 2\n").ok());
  std::map<std::string, int> counts;
  for (int i = 0; i < 300; ++i) counts[PickId(*b)]++;
  CHECK(counts["busy"] == 0);
  CHECK(counts["idle-1"] == 300);  // 1 vs 2 waiting still tells the idle ones apart
  // SetMetrics takes EngineMetrics as given: +inf, NaN and negative values must not win either.
  const double inf = std::numeric_limits<double>::infinity();
  const double nan = std::numeric_limits<double>::quiet_NaN();
  REQUIRE(b->SetMetrics("busy", {.waiting = inf, .running = inf, .kv_usage = nan}).ok());
  REQUIRE(b->SetMetrics("idle-2", {.waiting = -inf, .running = nan}).ok());  // reads as 0
  counts.clear();
  for (int i = 0; i < 300; ++i) counts[PickId(*b)]++;
  CHECK(counts["busy"] == 0);
  CHECK(counts["idle-2"] == 300);
}

TEST_CASE("consistent hashing keeps a session on one endpoint within the load bound") {
  ManualClock clock;
  auto b = MakeBalancer(Strategy::kConsistentHash, &clock);
  AddAll(*b, {{.id = "a"}, {.id = "b"}, {.id = "c"}, {.id = "d"}});
  const std::string first = PickId(*b, {.affinity_key = "session-1"});
  for (int i = 0; i < 20; ++i) CHECK(PickId(*b, {.affinity_key = "session-1"}) == first);
  // Held picks of one session spill once its endpoint passes ceil(1.25 x (total + 1) / 4).
  std::vector<Pick> held;
  for (int i = 0; i < 12; ++i) held.push_back(Value(b->PickEndpoint({.affinity_key = "session-1"})));
  for (auto& s : b->Endpoints()) CHECK(s.in_flight <= 4);
  // Removing another endpoint does not move the session.
  for (std::string id : {"a", "b", "c", "d"}) {
    if (id != first) {
      REQUIRE(b->RemoveEndpoint(id).ok());
      break;
    }
  }
  held.clear();
  CHECK(PickId(*b, {.affinity_key = "session-1"}) == first);
}

TEST_CASE("credential rotation: cooldown by error class, back after it ends (ManualClock)") {
  ManualClock clock;
  auto b = MakeBalancer(Strategy::kRoundRobin, &clock);
  AddAll(*b, {{.id = "key-1", .labels = {{"api_key", "sk-1"}}},
              {.id = "key-2", .labels = {{"api_key", "sk-2"}}}});
  {
    Pick p = Value(b->PickEndpoint(PickRequest{}));
    CHECK(p.label("api_key") == "sk-1");
    CHECK(p.label("none").empty());
    p.Complete({.http_status = 429});  // rate limited: out for 60 s
  }
  for (int i = 0; i < 4; ++i) CHECK(PickId(*b) == "key-2");
  {
    Pick p = Value(b->PickEndpoint(PickRequest{}));
    p.Complete({.failure = Failure::kAuth});  // key-2 out for 10 s
  }
  CHECK_THAT(ErrorOf(b->PickEndpoint(PickRequest{})),
             Catch::Contains("all 2 endpoints for model '' are cooling down or ejected; the first is back in 10.000 s"));
  clock.Advance(absl::Seconds(10));
  CHECK(PickId(*b) == "key-2");
  clock.Advance(absl::Seconds(50));
  std::string seq;
  for (int i = 0; i < 4; ++i) seq += PickId(*b).back();
  CHECK(seq.find('1') != std::string::npos);  // key-1 is back in rotation
  const auto stats = *StatsOf(*b, "key-1");
  CHECK(stats.errors >= 1);
  CHECK(stats.cooldown_until_nanos == 0);
}

TEST_CASE("cooldown after N consecutive failures of a class, a success resets the count") {
  ManualClock clock;
  Balancer::Options o;
  o.failures_before_cooldown = 3;
  auto b = MakeBalancer(Strategy::kRoundRobin, &clock, o);
  AddAll(*b, {{.id = "a"}});
  auto fail = [&](AttemptOutcome outcome) { Value(b->PickEndpoint(PickRequest{})).Complete(outcome); };
  fail({.failure = Failure::kConnect});
  fail({.failure = Failure::kConnect});
  fail({});  // a success in between
  fail({.failure = Failure::kConnect});
  fail({.failure = Failure::kConnect});
  fail({.http_status = 500});  // server errors do not cool down by default
  CHECK(b->PickEndpoint(PickRequest{}).ok());
  fail({.failure = Failure::kConnect});
  CHECK(b->PickEndpoint(PickRequest{}).status().code() == absl::StatusCode::kUnavailable);
}

TEST_CASE("filters: model label, max concurrency") {
  ManualClock clock;
  auto b = MakeBalancer(Strategy::kLeastRequest, &clock);
  AddAll(*b, {{.id = "q", .max_concurrency = 1, .labels = {{"model", "qwen"}}},
              {.id = "l", .labels = {{"model", "llama"}}},
              {.id = "any"}});
  CHECK(PickId(*b, PickRequest{.model = "llama"}) != "q");
  CHECK(PickId(*b, PickRequest{.model = "gpt"}) == "any");  // no model label: serves any model
  REQUIRE(b->RemoveEndpoint("any").ok());
  CHECK(b->PickEndpoint(PickRequest{.model = "gpt"}).status().code() == absl::StatusCode::kNotFound);
  Pick held = Value(b->PickEndpoint(PickRequest{.model = "qwen"}));
  CHECK(b->PickEndpoint(PickRequest{.model = "qwen"}).status().code() ==
        absl::StatusCode::kResourceExhausted);
  held.Complete({});
  CHECK(b->PickEndpoint(PickRequest{.model = "qwen"}).ok());
}

TEST_CASE("outcomes: averages, error rate, abandoned picks, picks outliving their endpoint") {
  ManualClock clock;
  auto b = MakeBalancer(Strategy::kRoundRobin, &clock);
  AddAll(*b, {{.id = "a"}});
  Value(b->PickEndpoint(PickRequest{}))
      .Complete({.latency = absl::Seconds(2), .ttft = absl::Milliseconds(100)});
  Value(b->PickEndpoint(PickRequest{}))
      .Complete({.latency = absl::Seconds(4), .ttft = absl::Milliseconds(200)});
  auto s = *StatsOf(*b, "a");
  CHECK(s.completions == 2);
  CHECK(absl::ToDoubleMilliseconds(s.ewma_ttft) == Approx(120));  // 100 + 0.2 x (200 - 100)
  CHECK(absl::ToDoubleSeconds(s.ewma_latency) == Approx(2.4));
  { Pick dropped = Value(b->PickEndpoint(PickRequest{})); }  // abandoned
  s = *StatsOf(*b, "a");
  CHECK(s.in_flight == 0);
  CHECK(s.errors == 1);
  CHECK(s.ewma_error_rate == Approx(0.2));

  Pick in_flight = Value(b->PickEndpoint(PickRequest{}));
  REQUIRE(b->RemoveEndpoint("a").ok());
  CHECK(b->Endpoints().empty());
  CHECK(b->RemoveEndpoint("a").code() == absl::StatusCode::kNotFound);
  b.reset();  // the balancer goes first
  CHECK(in_flight.endpoint_id() == "a");
  in_flight.Complete({});
  CHECK(in_flight.completed());
}

TEST_CASE("endpoints and options are validated, naming the field") {
  ManualClock clock;
  Balancer::Options o;
  o.imbalance_rel = 0.5;
  CHECK_THAT(ErrorOf(Balancer::Create(o, &clock)), Catch::Contains("imbalance_rel"));
  o = {};
  o.strategy = Strategy::kScored;
  o.weights = {0, 0, 0, 0};
  CHECK_THAT(ErrorOf(Balancer::Create(o, &clock)), Catch::Contains("weights"));
  o = {};
  o.ewma_weight = 0;
  CHECK_THAT(ErrorOf(Balancer::Create(o, &clock)), Catch::Contains("ewma_weight"));
  o = {};
  o.cooldown_auth = -absl::Seconds(1);
  CHECK_THAT(ErrorOf(Balancer::Create(o, &clock)), Catch::Contains("cooldown_auth"));
  o = {};
  o.prefix_hash.max_blocks = 0;
  CHECK_THAT(ErrorOf(Balancer::Create(o, &clock)), Catch::Contains("prefix_hash.max_blocks"));

  auto b = MakeBalancer(Strategy::kPrefixAffinity, &clock);
  CHECK_THAT(std::string(b->AddEndpoint({.id = ""}).message()), Catch::Contains("endpoint.id"));
  CHECK_THAT(std::string(b->AddEndpoint({.id = "x", .weight = 0}).message()),
             Catch::Contains("endpoint 'x'.weight"));
  REQUIRE(b->AddEndpoint({.id = "x"}).ok());
  CHECK(b->AddEndpoint({.id = "x"}).code() == absl::StatusCode::kAlreadyExists);
  CHECK(b->UpdateEndpoint({.id = "y"}).code() == absl::StatusCode::kNotFound);
  for (int i = 1; i < 64; ++i) REQUIRE(b->AddEndpoint({.id = "e" + std::to_string(i)}).ok());
  CHECK(b->AddEndpoint({.id = "one-too-many"}).code() == absl::StatusCode::kResourceExhausted);
  REQUIRE(b->RemoveEndpoint("e7").ok());
  CHECK(b->AddEndpoint({.id = "reuses-a-slot"}).ok());
}

TEST_CASE("parsed requests route by their own block hashes") {
  ManualClock clock;
  auto b = MakeBalancer(Strategy::kPrefixAffinity, &clock);
  AddAll(*b, {{.id = "a"}, {.id = "b"}});
  sluice::LlmRequest r;
  r.model = "m";
  r.messages = {{"system", std::string(2000, 's')}, {"user", "hi"}};
  r.prompt_chars = 2002;
  Pick first = Value(b->PickEndpoint(r));
  r.messages.push_back({"assistant", "hello"});
  r.messages.push_back({"user", "more"});
  Pick second = Value(b->PickEndpoint(r));  // a loaded home still wins: the gate needs > 2
  CHECK(second.endpoint_id() == first.endpoint_id());
  // 2,016 bytes were 15 full blocks and a partial one; the partial one changed, and the index
  // keys groups of 4 blocks, so the 12 blocks of the 3 whole groups match.
  CHECK(second.matched_blocks() == 12);
}

TEST_CASE("host scope: processes see each other's in-flight picks, and a killed one's expire") {
  ManualClock clock;
  sluice_test::RegionName region;
  Balancer::Options o;
  o.shared_region = region.name;
  o.shared_lease = absl::Minutes(1);
  auto here = MakeBalancer(Strategy::kLeastRequest, &clock, o);
  AddAll(*here, {{.id = "a"}, {.id = "b"}});

  // A forked worker holds three picks on "a" and dies without completing them.
  const pid_t child = fork();
  if (child == 0) {
    auto there = Balancer::Create(o, &clock);
    int held = 0;
    if (there.ok() && (*there)->AddEndpoint({.id = "a"}).ok()) {
      for (int i = 0; i < 3; ++i) {
        auto pick = (*there)->PickEndpoint(PickRequest{});
        if (pick.ok()) {
          new Balancer::Pick(*std::move(pick));  // leaked on purpose: never completed
          ++held;
        }
      }
    }
    _exit(held == 3 ? 0 : 1);
  }
  int status = 0;
  REQUIRE(waitpid(child, &status, 0) == child);
  REQUIRE(WIFEXITED(status));
  REQUIRE(WEXITSTATUS(status) == 0);

  // This process has nothing in flight, yet it sees a's three and sends new work to b.
  std::vector<Pick> held;
  for (int i = 0; i < 3; ++i) {
    held.push_back(Value(here->PickEndpoint(PickRequest{})));
    CHECK(held.back().endpoint_id() == "b");
  }
  CHECK(StatsOf(*here, "a")->in_flight == 0);  // the local view: this process's own picks
  held.clear();
  // The dead worker's leases end after shared_lease; then both endpoints are equal again.
  clock.Advance(absl::Minutes(1) + absl::Seconds(1));
  std::map<std::string, int> counts;
  for (int i = 0; i < 100; ++i) counts[PickId(*here)]++;
  CHECK(counts["a"] > 20);
  CHECK(counts["b"] > 20);

  o.shared_max_in_flight = 0;
  CHECK_THAT(ErrorOf(Balancer::Create(o, &clock)), Catch::Contains("shared_max_in_flight"));
}
