// Google Benchmark: the cost of one Balancer pick (and its Complete), by strategy, fleet size
// and prompt size. Run: build/dev/benchmarks/balancer_bench
//
// BM_Pick*: from a parsed request (block hashing included); BM_ParseAndPick: from the raw JSON
// body (simdjson parse + hashing + pick). Budget: <= 5 us at 16 endpoints and an 8k-token
// (32k-character) prompt.
#include <benchmark/benchmark.h>

#include <memory>
#include <string>

#include "absl/strings/str_cat.h"
#include "sluice/balancer.h"

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
