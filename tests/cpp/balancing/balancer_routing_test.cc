// The routing causes of issue 15, one TEST_CASE each, as an independent reviewer measured them:
// load guards that cannot fire on small fleets, a shared system prompt taken for affinity, a
// scored strategy that gives up a full prefix match for one request of load, and prefix affinity
// that stacks sessions beyond a replica's KV cache.
#include <catch2/catch.hpp>

#include <algorithm>
#include <map>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "sluice/balancer.h"
#include "balancing/make_balancer.h"
#include "test_support.h"

using sluice::Balancer;
using sluice::EndpointSpec;
using sluice::ManualClock;
using sluice::PickRequest;
using sluice_test::Value;
using Pick = Balancer::Pick;
using Strategy = Balancer::Strategy;

namespace {

using sluice_test::MakeBalancer;

std::map<std::string, int64_t> InFlight(const Balancer& b) {
  std::map<std::string, int64_t> out;
  for (const auto& s : b.Endpoints()) out[s.id] = s.in_flight;
  return out;
}

int64_t Spread(const std::map<std::string, int64_t>& counts) {
  int64_t lo = INT64_MAX, hi = 0;
  for (const auto& [id, n] : counts) lo = std::min(lo, n), hi = std::max(hi, n);
  return hi - lo;
}

// A conversation's own block hashes, after `shared` leading blocks every conversation has.
std::vector<uint64_t> Conversation(uint64_t id, int n, std::vector<uint64_t> shared = {}) {
  for (int i = 0; n > 0 && static_cast<int>(shared.size()) < n; ++i) {
    shared.push_back(id * 1000003 + static_cast<uint64_t>(i) + 1);
  }
  return shared;
}

}  // namespace

// Cause 1: mean + 2 sigma + 1 is out of reach for n <= 5 values (max - mean <= sigma sqrt(n-1)),
// and the imbalance gate needed a gap of more than 8: one conversation's held picks went
// [6,0,0,0] after 6 picks on 4 endpoints.
TEST_CASE("prefix affinity: the load guard spreads one hot prefix on fleets of 2 to 5") {
  for (int n = 2; n <= 5; ++n) {
    CAPTURE(n);
    ManualClock clock;
    auto b = MakeBalancer(Strategy::kPrefixAffinity, &clock);
    for (int i = 0; i < n; ++i) REQUIRE(b->AddEndpoint({.id = "e" + std::to_string(i)}).ok());
    const auto blocks = Conversation(1, 10);
    std::vector<Pick> held;
    for (int i = 0; i < 2 * n + 2; ++i) {
      held.push_back(Value(b->PickEndpoint({.prefix_blocks = blocks})));
      CAPTURE(i);
      // The holder may run ahead of the least loaded by imbalance_abs (2) plus the pick itself.
      CHECK(Spread(InFlight(*b)) <= 3);
    }
  }
}

// Cause 2: distinct conversations that share only a system prompt all matched its block, so a
// cold start piled onto one replica ([8,0,0,0] after 8 picks on 4 endpoints).
TEST_CASE("prefix affinity: a shared system prompt is no affinity, a conversation's own turns are") {
  const std::vector<uint64_t> system = {0xabcdef};  // one block every conversation starts with
  ManualClock clock;

  SECTION("held picks: cold-start conversations spread by load") {
    auto b = MakeBalancer(Strategy::kPrefixAffinity, &clock);
    for (std::string id : {"a", "b", "c", "d"}) REQUIRE(b->AddEndpoint({.id = id}).ok());
    std::vector<Pick> held;
    for (uint64_t conv = 1; conv <= 8; ++conv) {
      held.push_back(Value(b->PickEndpoint({.prefix_blocks = Conversation(conv, 4, system)})));
    }
    for (const auto& [id, n] : InFlight(*b)) CHECK(n == 2);
  }

  SECTION("completed picks: no load anywhere, still no pile-up; later turns go home") {
    auto b = MakeBalancer(Strategy::kPrefixAffinity, &clock);
    for (std::string id : {"a", "b", "c", "d"}) REQUIRE(b->AddEndpoint({.id = id}).ok());
    std::map<uint64_t, std::string> home;
    std::map<std::string, int> per_endpoint;
    for (uint64_t conv = 1; conv <= 8; ++conv) {
      Pick p = Value(b->PickEndpoint({.prefix_blocks = Conversation(conv, 4, system)}));
      home[conv] = p.endpoint_id();
      per_endpoint[p.endpoint_id()]++;
      p.Complete({});
    }
    // The first conversation's holder may take the second (one turn cannot tell a new
    // conversation from its own next turn); from then on the shared block is known as shared.
    CHECK(per_endpoint.size() == 4);
    for (const auto& [id, n] : per_endpoint) CHECK(n <= 3);
    for (uint64_t conv = 1; conv <= 8; ++conv) {
      Pick p = Value(b->PickEndpoint({.prefix_blocks = Conversation(conv, 7, system)}));
      CHECK(p.endpoint_id() == home[conv]);
      CHECK(p.matched_blocks() == 4);
      p.Complete({});
    }
  }

  SECTION("scored: completed picks of new conversations do not pile onto the first holder") {
    auto b = MakeBalancer(Strategy::kScored, &clock);
    for (std::string id : {"a", "b", "c", "d"}) REQUIRE(b->AddEndpoint({.id = id}).ok());
    std::map<std::string, int> per_endpoint;
    for (uint64_t conv = 1; conv <= 8; ++conv) {
      Pick p = Value(b->PickEndpoint({.prefix_blocks = Conversation(conv, 4, system)}));
      per_endpoint[p.endpoint_id()]++;
      p.Complete({});
    }
    CHECK(per_endpoint.size() >= 3);
    for (const auto& [id, n] : per_endpoint) CHECK(n <= 3);
  }

  SECTION("two-block prompts: the system block and a partial one") {
    auto b = MakeBalancer(Strategy::kPrefixAffinity, &clock);
    for (std::string id : {"a", "b", "c", "d"}) REQUIRE(b->AddEndpoint({.id = id}).ok());
    std::map<std::string, int> per_endpoint;
    for (uint64_t conv = 1; conv <= 8; ++conv) {
      Pick p = Value(b->PickEndpoint({.prefix_blocks = Conversation(conv, 2, system)}));
      per_endpoint[p.endpoint_id()]++;
      p.Complete({});
    }
    CHECK(per_endpoint.size() == 4);
    for (const auto& [id, n] : per_endpoint) CHECK(n <= 3);
  }
}

// Cause 3: min-max normalisation made one request of load worth a whole prefix match: with two
// endpoints and equal fresh metrics the follow-up turn went back to its holder in 0 of 200.
TEST_CASE("scored: a prefix match outweighs one request of load, a large imbalance does not") {
  ManualClock clock;
  auto b = MakeBalancer(Strategy::kScored, &clock);
  for (std::string id : {"a", "b"}) REQUIRE(b->AddEndpoint({.id = id}).ok());
  const std::string idle = "vllm:num_requests_waiting 0\nvllm:num_requests_running 0\n"
                           "vllm:kv_cache_usage_perc 0.1\n";
  REQUIRE(b->UpdateMetrics("a", idle).ok());
  REQUIRE(b->UpdateMetrics("b", idle).ok());
  Pick first = Value(b->PickEndpoint({.prefix_blocks = Conversation(1, 8)}));
  const std::string home = first.endpoint_id();
  const std::string other = home == "a" ? "b" : "a";
  // The first turn is still streaming (one more in flight at home) when the second is sent.
  int went_home = 0;
  for (int trial = 0; trial < 200; ++trial) {
    Pick next = Value(b->PickEndpoint({.prefix_blocks = Conversation(1, 12)}));
    went_home += next.endpoint_id() == home;
  }
  CHECK(went_home == 200);
  // Thirty queued at home against none elsewhere: load wins over the match.
  REQUIRE(b->UpdateMetrics(home, "vllm:num_requests_waiting 22\nvllm:num_requests_running 8\n"
                                 "vllm:kv_cache_usage_perc 0.1\n").ok());
  Pick crowded = Value(b->PickEndpoint({.prefix_blocks = Conversation(1, 12)}));
  CHECK(crowded.endpoint_id() == other);
}

namespace {

// One long chat session: a fixed random text per turn (~1,680 bytes, ~420 tokens), so 50 turns
// make ~21k tokens, far past the 8k tokens the prefix hashes cover.
struct Session {
  explicit Session(unsigned seed) : rng(seed) {}
  sluice::LlmRequest NextTurn() {
    auto text = [&](int chars) {
      std::string s(static_cast<size_t>(chars), ' ');
      for (char& c : s) c = static_cast<char>('a' + rng() % 26);
      return s;
    };
    if (!request.messages.empty()) request.messages.push_back({"assistant", text(1480)});
    request.messages.push_back({"user", text(200)});
    request.model = "m";
    request.prompt_chars = 0;
    for (const auto& m : request.messages) request.prompt_chars += static_cast<int64_t>(m.content.size());
    return request;
  }
  std::mt19937 rng;
  sluice::LlmRequest request;
};

}  // namespace

// Cause 4: two ~21k-token sessions per replica on r0 and r1 (none on r2 and r3) evict each
// other's KV cache, and affinity never moves them: in-flight counts are balanced, and the index
// covers only the first 8k tokens of each.
TEST_CASE("prefix affinity: sessions that overflow a replica's KV cache are not stacked") {
  ManualClock clock;
  auto b = MakeBalancer(Strategy::kPrefixAffinity, &clock);
  // 1,024 blocks of 128 bytes: ~32k tokens of KV cache each; two 21k-token sessions overflow it.
  for (std::string id : {"r0", "r1"}) REQUIRE(b->AddEndpoint({.id = id, .kv_capacity_blocks = 1024}).ok());
  std::vector<Session> sessions;
  for (unsigned s = 0; s < 4; ++s) sessions.emplace_back(100 + s);
  std::vector<std::string> where(4);
  std::vector<int> moves(4, 0);
  auto turn = [&](bool hold_all) {
    std::vector<Pick> held;
    for (size_t s = 0; s < sessions.size(); ++s) {
      Pick p = Value(b->PickEndpoint(sessions[s].NextTurn()));
      if (!where[s].empty() && where[s] != p.endpoint_id()) ++moves[s];
      where[s] = p.endpoint_id();
      clock.Advance(absl::Seconds(2));
      if (hold_all) held.push_back(std::move(p));
    }
  };
  turn(/*hold_all=*/true);  // all four at once: two each on r0 and r1
  CHECK(std::count(where.begin(), where.end(), "r0") == 2);
  CHECK(InFlight(*b) == std::map<std::string, int64_t>{{"r0", 0}, {"r1", 0}});
  for (int t = 2; t <= 10; ++t) turn(false);
  CHECK(moves == std::vector<int>{0, 0, 0, 0});
  // Two empty replicas join; the sessions keep growing to ~21k tokens.
  for (std::string id : {"r2", "r3"}) REQUIRE(b->AddEndpoint({.id = id, .kv_capacity_blocks = 1024}).ok());
  for (int t = 11; t <= 50; ++t) turn(false);
  CHECK(std::set<std::string>(where.begin(), where.end()).size() == 4);
  for (int m : moves) CHECK(m <= 1);  // moved once, when it outgrew its replica; no ping-pong
}

TEST_CASE("prefix affinity: an engine that reports a full KV cache gets no new prefix work") {
  ManualClock clock;
  auto b = MakeBalancer(Strategy::kPrefixAffinity, &clock);
  for (std::string id : {"a", "b"}) REQUIRE(b->AddEndpoint({.id = id}).ok());
  const std::string home = Value(b->PickEndpoint({.prefix_blocks = Conversation(1, 8)})).endpoint_id();
  const std::string other = home == "a" ? "b" : "a";
  REQUIRE(b->SetMetrics(home, {.waiting = 0, .running = 4, .kv_usage = 0.97}).ok());
  REQUIRE(b->SetMetrics(other, {.waiting = 0, .running = 4, .kv_usage = 0.30}).ok());
  CHECK(Value(b->PickEndpoint({.prefix_blocks = Conversation(1, 12)})).endpoint_id() == other);
  // Both full: moving would not help, the prefix stays where it is cached.
  const std::string now_home = other;
  REQUIRE(b->SetMetrics(now_home, {.waiting = 0, .running = 4, .kv_usage = 0.98}).ok());
  CHECK(Value(b->PickEndpoint({.prefix_blocks = Conversation(1, 14)})).endpoint_id() == now_home);
  // Stale metrics say nothing.
  clock.Advance(absl::Seconds(3));
  CHECK(Value(b->PickEndpoint({.prefix_blocks = Conversation(1, 16)})).endpoint_id() == now_home);
}

// Found by the second simulator (benchmarks/fleet2): the rule above also took RAG's long shared
// documents for no affinity, so questions on one 3,000-token document spread over every replica
// and each paid its prefill (no better than round robin). A long shared prefix counts.
TEST_CASE("prefix affinity: a long shared document is affinity, a short shared prompt is not") {
  ManualClock clock;
  std::vector<uint64_t> document_a(94), document_b(94);  // ~3,000 tokens in 128-byte blocks
  for (size_t i = 0; i < document_a.size(); ++i) document_a[i] = 0xA000 + i, document_b[i] = 0xB000 + i;
  for (Strategy strategy : {Strategy::kPrefixAffinity, Strategy::kScored}) {
    Balancer::Options o;
    if (strategy == Strategy::kScored) o.weights = {.prefix = 3, .queue = 0, .kv_cache = 0, .in_flight = 1};
    auto b = MakeBalancer(strategy, &clock, o);
    for (int e = 0; e < 8; ++e) REQUIRE(b->AddEndpoint({.id = "r" + std::to_string(e)}).ok());
    std::map<char, std::set<std::string>> served;
    for (uint64_t question = 1; question <= 24; ++question) {
      const char doc = question % 2 ? 'a' : 'b';
      Pick p = Value(b->PickEndpoint(
          {.prefix_blocks = Conversation(question, 96, doc == 'a' ? document_a : document_b)}));
      served[doc].insert(p.endpoint_id());
      p.Complete({});
    }
    INFO("strategy " << static_cast<int>(strategy));
    // Each document's questions stay with the replica that holds it (idle fleet: no load gate).
    CHECK(served['a'].size() == 1);
    CHECK(served['b'].size() == 1);
  }
  // The same with a 16-block threshold above the documents' length: they spread, as a short
  // system prompt does.
  Balancer::Options o;
  o.min_shared_affinity_blocks = 95;
  auto b = MakeBalancer(Strategy::kPrefixAffinity, &clock, o);
  for (int e = 0; e < 8; ++e) REQUIRE(b->AddEndpoint({.id = "r" + std::to_string(e)}).ok());
  std::set<std::string> served;
  for (uint64_t question = 1; question <= 24; ++question) {
    Pick p = Value(b->PickEndpoint({.prefix_blocks = Conversation(question, 96, document_a)}));
    served.insert(p.endpoint_id());
    p.Complete({});
  }
  CHECK(served.size() > 2);
}

TEST_CASE("prefix affinity: a popular long document spreads past the load gate, then stays") {
  ManualClock clock;
  std::vector<uint64_t> document(94);
  for (size_t i = 0; i < document.size(); ++i) document[i] = 0xC000 + i;
  auto b = MakeBalancer(Strategy::kPrefixAffinity, &clock);
  for (int e = 0; e < 4; ++e) REQUIRE(b->AddEndpoint({.id = "r" + std::to_string(e)}).ok());
  std::vector<Pick> held;  // questions still running: load builds up
  for (uint64_t question = 1; question <= 30; ++question) {
    held.push_back(Value(b->PickEndpoint({.prefix_blocks = Conversation(question, 96, document)})));
    CAPTURE(question);
    // Never more than the gate allows ahead of the least loaded: for a 94-block match
    // 2 x 94 / 16 = 11.75 requests, plus the pick itself. No pile-up.
    CHECK(Spread(InFlight(*b)) <= 12);
  }
  int used = 0;
  for (const auto& [id, n] : InFlight(*b)) used += n > 0;
  CHECK(used >= 3);
}

TEST_CASE("min_shared_affinity_blocks must be at least 1") {
  Balancer::Options o;
  o.min_shared_affinity_blocks = 0;
  auto made = Balancer::Create(o);
  REQUIRE(absl::IsInvalidArgument(made.status()));
  CHECK(std::string(made.status().message()).find("min_shared_affinity_blocks") != std::string::npos);
}

// Found by the second simulator (benchmarks/fleet2, agentic at 64k): a gap of 2 for every match
// moved 9% of follow-up turns off their holder, each a full re-prefill of the history, where one
// more request in flight on a continuous-batching engine costs little. The gap now grows with the
// match (imbalance_abs per min_shared_affinity_blocks matched): a 96-block history stays with its
// holder up to 2 x 96 / 16 = 12 requests ahead, while a short match still spreads at 2 (cause 1).
TEST_CASE("prefix affinity: the imbalance gate grows with what the match saves") {
  ManualClock clock;
  auto b = MakeBalancer(Strategy::kPrefixAffinity, &clock);
  for (int e = 0; e < 4; ++e) REQUIRE(b->AddEndpoint({.id = "r" + std::to_string(e)}).ok());
  const auto history = Conversation(7, 96);
  const std::string home = Value(b->PickEndpoint({.prefix_blocks = history})).endpoint_id();
  // Picks of the same long history held: it stays home while home is at most 12 ahead.
  std::vector<Pick> held;
  for (int i = 0; i < 13; ++i) {
    held.push_back(Value(b->PickEndpoint({.prefix_blocks = history})));
    CAPTURE(i);
    CHECK(held.back().endpoint_id() == home);
  }
  CHECK(InFlight(*b)[home] == 13);
  // 13 ahead of the idle replicas (> 12): the next one goes elsewhere.
  CHECK(Value(b->PickEndpoint({.prefix_blocks = history})).endpoint_id() != home);
  // A short conversation (10 blocks) next to it still spreads at a gap of 2.
  std::vector<Pick> short_held;
  const auto short_chat = Conversation(8, 10);
  for (int i = 0; i < 10; ++i) short_held.push_back(Value(b->PickEndpoint({.prefix_blocks = short_chat})));
  std::map<std::string, int> per_endpoint;
  for (const Pick& p : short_held) ++per_endpoint[p.endpoint_id()];
  for (const auto& [id, count] : per_endpoint) CHECK(count <= 4);
}

// Found by the second simulator (heterogeneous workload): the KV estimate counted each one-off
// 2-8k-token prompt as a conversation resident for a 60 s half-life, so replicas that had served
// many looked full and a conversation's next turn was moved off its holder (and work went to the
// half-speed replica). A prompt counts once its conversation continues.
TEST_CASE("prefix affinity: one-off prompts do not fill the KV estimate, continued conversations do") {
  ManualClock clock;
  auto b = MakeBalancer(Strategy::kPrefixAffinity, &clock);
  // 1,024 blocks of 128 bytes: ~32k tokens of KV cache.
  REQUIRE(b->AddEndpoint({.id = "r0", .kv_capacity_blocks = 1024}).ok());
  const auto turn = [](int n) { return Conversation(1, n); };
  Value(b->PickEndpoint({.prefix_blocks = turn(20), .prompt_tokens = 600})).Complete({});
  Value(b->PickEndpoint({.prefix_blocks = turn(40), .prompt_tokens = 1200})).Complete({});
  // Ten one-off 8k-token prompts served there: 80k tokens if each counted.
  for (uint64_t i = 0; i < 10; ++i) {
    clock.Advance(absl::Seconds(1));
    Value(b->PickEndpoint({.prefix_blocks = Conversation(100 + i, 64), .prompt_tokens = 8000}))
        .Complete({});
  }
  REQUIRE(b->AddEndpoint({.id = "r1", .kv_capacity_blocks = 1024}).ok());
  // The conversation's next turn stays with its holder: r0 holds ~1.2k tokens of conversations.
  CHECK(Value(b->PickEndpoint({.prefix_blocks = turn(60), .prompt_tokens = 1800})).endpoint_id() == "r0");
  // (Continued conversations still count: the KV-overflow test above moves sessions of ~21k
  // tokens.) A one-off turned conversation counts from its second turn: 30k of r0's 32k, so
  // the first conversation's next turn (3.5k tokens) no longer fits there.
  Value(b->PickEndpoint({.prefix_blocks = Conversation(100, 80), .prompt_tokens = 30000})).Complete({});
  CHECK(Value(b->PickEndpoint({.prefix_blocks = turn(80), .prompt_tokens = 3500})).endpoint_id() == "r1");
}

// Found by the second simulator (agentic at 24k tokens per replica): with a 60 s half-life,
// ended sessions kept counting so long that every replica looked full. At 30 s a 30k-token
// session idle for a minute counts for a quarter, and a live conversation's next turn fits
// beside it.
TEST_CASE("prefix affinity: a session idle for a minute counts for a quarter (30 s half-life)") {
  for (int half_life : {0, 60}) {  // 0: the default
    CAPTURE(half_life);
    ManualClock clock;
    Balancer::Options o;
    if (half_life > 0) o.kv_session_half_life = absl::Seconds(half_life);
    auto b = MakeBalancer(Strategy::kPrefixAffinity, &clock, o);
    REQUIRE(b->AddEndpoint({.id = "r0", .kv_capacity_blocks = 1024}).ok());  // ~32k tokens
    Value(b->PickEndpoint({.prefix_blocks = Conversation(1, 20), .prompt_tokens = 1000})).Complete({});
    Value(b->PickEndpoint({.prefix_blocks = Conversation(1, 40), .prompt_tokens = 30000})).Complete({});
    Value(b->PickEndpoint({.prefix_blocks = Conversation(2, 20), .prompt_tokens = 1000})).Complete({});
    clock.Advance(absl::Seconds(60));
    REQUIRE(b->AddEndpoint({.id = "r1", .kv_capacity_blocks = 1024}).ok());
    // Default: 30k / 4 + 20k fits in 32k. At 60 s, 30k / 2 + 20k does not: the turn moves.
    const std::string went =
        Value(b->PickEndpoint({.prefix_blocks = Conversation(2, 40), .prompt_tokens = 20000})).endpoint_id();
    CHECK(went == (half_life == 60 ? "r1" : "r0"));
  }
}
