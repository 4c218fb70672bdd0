// Google Benchmark: the cost of one Balancer pick (and its Complete), by strategy, fleet size
// and prompt size. Run: build/dev/benchmarks/balancer_bench
//
// BM_Pick*: from a parsed request (block hashing included); BM_ParseAndPick: from the raw JSON
// body (simdjson parse + hashing + pick). Budget: <= 5 us at 16 endpoints and an 8k-token
// (32k-character) prompt.
#include <benchmark/benchmark.h>

#include <unistd.h>

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "chat_body.h"

#include "absl/strings/str_cat.h"
#include "sluice/balancer.h"
#include "sluice/shared_region.h"

namespace {

using sluice::Balancer;

std::unique_ptr<Balancer> Fleet(Balancer::Strategy strategy, int endpoints) {
  Balancer::Options o;
  o.strategy = strategy;
  o.seed = 1;
  auto b = Balancer::Create(o).value();
  for (int i = 0; i < endpoints; ++i) (void)b->AddEndpoint({.id = absl::StrCat("replica-", i)});
  return b;
}

sluice::LlmRequest Conversation(int64_t chars) {
  sluice::LlmRequest r;
  r.model = "qwen2.5-7b";
  r.messages = {{"system", std::string(static_cast<size_t>(chars / 4), 's')},
                {"user", std::string(static_cast<size_t>(chars - chars / 4), 'u')}};
  r.prompt_chars = chars;
  return r;
}

void PickLoop(benchmark::State& state, Balancer::Strategy strategy) {
  auto b = Fleet(strategy, static_cast<int>(state.range(0)));
  const sluice::LlmRequest request = Conversation(state.range(1));
  for (auto _ : state) {
    Balancer::Pick pick = b->PickEndpoint(request).value();
    pick.Complete({});
  }
}

void BM_PickPrefixAffinity(benchmark::State& s) { PickLoop(s, Balancer::Strategy::kPrefixAffinity); }
void BM_PickScored(benchmark::State& s) { PickLoop(s, Balancer::Strategy::kScored); }
void BM_PickLeastRequest(benchmark::State& s) { PickLoop(s, Balancer::Strategy::kLeastRequest); }
void BM_PickRoundRobin(benchmark::State& s) { PickLoop(s, Balancer::Strategy::kRoundRobin); }

void BM_ParseAndPick(benchmark::State& state) {
  auto b = Fleet(Balancer::Strategy::kPrefixAffinity, static_cast<int>(state.range(0)));
  const int64_t chars = state.range(1);
  const std::string body = absl::StrCat(
      R"({"model":"qwen2.5-7b","stream":true,"messages":[{"role":"system","content":")",
      std::string(static_cast<size_t>(chars / 4), 's'), R"("},{"role":"user","content":")",
      std::string(static_cast<size_t>(chars - chars / 4), 'u'), R"("}]})");
  for (auto _ : state) {
    sluice::LlmRequest request = sluice::ParseLlmRequest(body).value();
    Balancer::Pick pick = b->PickEndpoint(request).value();
    pick.Complete({});
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations()) * static_cast<int64_t>(body.size()));
}

// ---- Issue 15: an 8k-token chat conversation (32,000 bytes of content), timed per pick ----
//
// BM_Chat<case>/strategy:{0 least request (the default), 1 prefix affinity}/endpoints:{4,8}/
// raw:{0 parsed request, 1 raw body (simdjson parse included)}. Manual time: only the pick and
// its Complete are timed; building the next body is not.
//   New:      a new conversation each pick, so prefix affinity inserts 256 fresh blocks and (once
//             the index is full, after ~64 picks per endpoint) evicts as many; the index stays at
//             its kv_capacity_blocks bound, so memory is flat.
//   NextTurn: a conversation picked once (untimed), then its next turn (one more assistant reply
//             and user message, 300 bytes each) timed.
//   Same:     the same body again.
constexpr size_t kChatChars = 32000;

Balancer::Strategy ChatStrategy(int64_t arg) {
  return arg == 0 ? Balancer::Strategy::kLeastRequest : Balancer::Strategy::kPrefixAffinity;
}

// Seconds for one pick + Complete from a parsed request, or from the raw body (parse included).
double TimedPick(Balancer& b, const sluice::LlmRequest& request) {
  const auto start = std::chrono::steady_clock::now();
  b.PickEndpoint(request).value().Complete({});
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

double TimedPick(Balancer& b, std::string_view body) {
  const auto start = std::chrono::steady_clock::now();
  b.PickEndpoint(sluice::ParseLlmRequest(body).value()).value().Complete({});
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

// Picks a new conversation each iteration (its id leads the system prompt, so it shares no
// block), from the raw body when `raw`, on the balancer `balancer_for` gives for its id.
template <typename BalancerFor>
void PickNewConversations(benchmark::State& state, bool raw, BalancerFor balancer_for) {
  sluice_bench::ChatBody body = sluice_bench::MakeChatBody(1, kChatChars);
  sluice::LlmRequest parsed = sluice::ParseLlmRequest(body.json).value();
  const size_t content_id_at = sizeof(sluice_bench::kIdLead) - 1;
  uint64_t id = 1;
  for (auto _ : state) {
    ++id;
    sluice_bench::WriteId(body.json.data() + body.id_at, id);
    sluice_bench::WriteId(parsed.messages[0].content.data() + content_id_at, id);
    Balancer& b = balancer_for(id);
    state.SetIterationTime(raw ? TimedPick(b, std::string_view(body.json)) : TimedPick(b, parsed));
  }
}

// The same on one balancer, from the raw body when state.range(2) says so.
void PickNewConversations(benchmark::State& state, Balancer& b) {
  PickNewConversations(state, state.range(2) != 0, [&](uint64_t) -> Balancer& { return b; });
}

void BM_ChatNew(benchmark::State& state) {
  auto b = Fleet(ChatStrategy(state.range(0)), static_cast<int>(state.range(1)));
  PickNewConversations(state, *b);
}

// BM_ChatNew with 512-byte blocks (PrefixHashOptions): 64 blocks cover the same 32 KiB, and the
// same KV capacity in bytes is a quarter as many blocks. A configuration, not a code path: what
// a coarser prefix index costs per new conversation.
void BM_ChatNewCoarseBlocks(benchmark::State& state) {
  Balancer::Options o;
  o.strategy = ChatStrategy(state.range(0));
  o.seed = 1;
  o.prefix_hash = {.block_chars = 512, .max_blocks = 64};
  o.kv_capacity_blocks = Balancer::Options().kv_capacity_blocks / 4;
  auto b = Balancer::Create(o).value();
  for (int i = 0; i < state.range(1); ++i) (void)b->AddEndpoint({.id = absl::StrCat("replica-", i)});
  PickNewConversations(state, *b);
}

// BM_ChatNew in host scope: `workers` balancers in this process share one shared_region (as a
// host's Gunicorn workers do) and take the picks in turn, so each pick first replays the
// routes the other workers took since its own last pick (workers - 1 of them, each a new
// conversation's 256 blocks) and appends its own. Prefix affinity, 4 endpoints, parsed request.
void BM_ChatNewHostScope(benchmark::State& state) {
  const int workers = static_cast<int>(state.range(0));
  const std::string region = absl::StrCat("bench-routes-", getpid());
  std::vector<std::unique_ptr<Balancer>> fleet;
  for (int w = 0; w < workers; ++w) {
    Balancer::Options o;
    o.strategy = Balancer::Strategy::kPrefixAffinity;
    o.seed = static_cast<uint64_t>(w + 1);
    o.shared_region = region;
    fleet.push_back(Balancer::Create(o).value());
    for (int i = 0; i < 4; ++i) (void)fleet.back()->AddEndpoint({.id = absl::StrCat("replica-", i)});
  }
  PickNewConversations(state, /*raw=*/false,
                       [&](uint64_t id) -> Balancer& { return *fleet[id % fleet.size()]; });
  fleet.clear();
  for (const char* suffix : {"", ".endpoints", ".routes"}) {
    (void)sluice::RemoveSharedRegion(region + suffix);
  }
}

void BM_ChatNextTurn(benchmark::State& state) {
  auto b = Fleet(ChatStrategy(state.range(0)), static_cast<int>(state.range(1)));
  const bool raw = state.range(2) != 0;
  const sluice_bench::ChatBody first = sluice_bench::MakeChatBody(1, kChatChars);
  std::string next = first.json;
  sluice_bench::AppendTurn(next, 7, 300);
  uint64_t id = 1;
  for (auto _ : state) {
    ++id;
    std::string body = first.json;
    sluice_bench::WriteId(body.data() + first.id_at, id);
    std::string turn = next;
    sluice_bench::WriteId(turn.data() + first.id_at, id);
    b->PickEndpoint(sluice::ParseLlmRequest(body).value()).value().Complete({});
    const sluice::LlmRequest parsed = sluice::ParseLlmRequest(turn).value();
    state.SetIterationTime(raw ? TimedPick(*b, std::string_view(turn))
                               : TimedPick(*b, parsed));
  }
}

void BM_ChatSame(benchmark::State& state) {
  auto b = Fleet(ChatStrategy(state.range(0)), static_cast<int>(state.range(1)));
  const bool raw = state.range(2) != 0;
  const sluice_bench::ChatBody body = sluice_bench::MakeChatBody(1, kChatChars);
  const sluice::LlmRequest parsed = sluice::ParseLlmRequest(body.json).value();
  for (auto _ : state) {
    state.SetIterationTime(raw ? TimedPick(*b, std::string_view(body.json))
                               : TimedPick(*b, parsed));
  }
}

void ChatArgs(benchmark::internal::Benchmark* b) {
  for (int strategy : {0, 1}) {
    for (int endpoints : {4, 8}) {
      for (int raw : {0, 1}) b->Args({strategy, endpoints, raw});
    }
  }
  // Fixed iterations: a next turn's untimed first pick would otherwise make a 0.2 us case run
  // for minutes to reach the minimum time.
  b->ArgNames({"strategy", "endpoints", "raw"})->UseManualTime()->Iterations(20000);
}

BENCHMARK(BM_ChatNew)->Apply(ChatArgs);
BENCHMARK(BM_ChatNextTurn)->Apply(ChatArgs);
BENCHMARK(BM_ChatSame)->Apply(ChatArgs);
BENCHMARK(BM_ChatNewHostScope)
    ->Arg(1)
    ->Arg(4)
    ->ArgNames({"workers"})
    ->UseManualTime()
    ->Iterations(20000);
BENCHMARK(BM_ChatNewCoarseBlocks)
    ->Args({1, 4, 0})
    ->Args({1, 4, 1})
    ->Args({1, 8, 0})
    ->Args({1, 8, 1})
    ->ArgNames({"strategy", "endpoints", "raw"})
    ->UseManualTime()
    ->Iterations(20000);

void FleetsAndPrompts(benchmark::internal::Benchmark* b) {
  for (int endpoints : {4, 16, 64}) {
    for (int chars : {1000, 32000}) b->Args({endpoints, chars});
  }
  b->ArgNames({"endpoints", "chars"});
}

BENCHMARK(BM_PickPrefixAffinity)->Apply(FleetsAndPrompts);
BENCHMARK(BM_PickScored)->Apply(FleetsAndPrompts);
BENCHMARK(BM_PickLeastRequest)->Apply(FleetsAndPrompts);
BENCHMARK(BM_PickRoundRobin)->Args({16, 1000})->ArgNames({"endpoints", "chars"});
BENCHMARK(BM_ParseAndPick)->Apply(FleetsAndPrompts);

}  // namespace

BENCHMARK_MAIN();
