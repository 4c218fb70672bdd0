// Google Benchmark: what FallbackPolicy adds per attempt. Run: build/dev/benchmarks/fallback_bench
//
// BM_CallOneAttempt:   Begin + Next(200): a call that succeeds at once (breaker, budget, deadline).
// BM_CallFallsBack:    Begin + Next(500) + Next(200): the primary fails, the backup answers; the
//                      time is for two attempts.
// BM_CallBalanced:     one attempt on a target backed by a least-request Balancer of 4 endpoints.
// BM_Breaker:          CircuitBreaker TryAcquire + Record alone.
// BM_RingBreaker:      the baseline beside it: resilience4j's COUNT_BASED window (a ring of the
//                      last 100 outcomes and a failure count) under one mutex, as its
//                      SYNCHRONIZED mode does.
// BM_ClassifyBody:     Classify for a 400 with an OpenAI context-length error body (simdjson).
// Each runs on 1 and 2 threads sharing one object.
#include <benchmark/benchmark.h>

#include <array>
#include <memory>
#include <mutex>

#include "sluice/fallback_policy.h"
#include "sluice/provider_error.h"

namespace {

using sluice::FallbackPolicy;

FallbackPolicy& SharedPolicy(bool balanced) {
  static std::unique_ptr<FallbackPolicy> plain, with_balancer;
  static std::once_flag once;
  std::call_once(once, [] {
    FallbackPolicy::Options o;
    o.targets = {{.name = "primary", .model = "gpt-4o"}, {.name = "backup", .model = "qwen"}};
    o.max_retries_per_target = 0;
    o.breaker.consecutive_failures = 0;  // the benchmark fails the primary on purpose
    o.breaker.failure_ratio = 0;
    plain = FallbackPolicy::Create(o).value();
    auto balancer = std::shared_ptr<sluice::Balancer>(sluice::Balancer::Create({}).value());
    for (const char* id : {"k1", "k2", "k3", "k4"}) (void)balancer->AddEndpoint({.id = id});
    o.targets = {{.name = "pool", .balancer = balancer}};
    with_balancer = FallbackPolicy::Create(o).value();
  });
  return balanced ? *with_balancer : *plain;
}

void BM_CallOneAttempt(benchmark::State& state) {
  FallbackPolicy& policy = SharedPolicy(false);
  for (auto _ : state) {
    FallbackPolicy::Call call = policy.Begin();
    benchmark::DoNotOptimize(call.Next({.http_status = 200}));
  }
}
BENCHMARK(BM_CallOneAttempt)->Threads(1)->Threads(2);

void BM_CallFallsBack(benchmark::State& state) {
  FallbackPolicy& policy = SharedPolicy(false);
  for (auto _ : state) {
    FallbackPolicy::Call call = policy.Begin();
    call.Next({.http_status = 500});
    benchmark::DoNotOptimize(call.Next({.http_status = 200}));
  }
  state.SetItemsProcessed(2 * state.iterations());  // attempts
}
BENCHMARK(BM_CallFallsBack)->Threads(1)->Threads(2);

void BM_CallBalanced(benchmark::State& state) {
  FallbackPolicy& policy = SharedPolicy(true);
  for (auto _ : state) {
    FallbackPolicy::Call call = policy.Begin();
    benchmark::DoNotOptimize(call.Next({.http_status = 200}));
  }
}
BENCHMARK(BM_CallBalanced)->Threads(1)->Threads(2);

void BM_Breaker(benchmark::State& state) {
  static auto breaker = sluice::CircuitBreaker::Create({.consecutive_failures = 0,
                                                         .failure_ratio = 0}).value();
  uint64_t i = 0;
  for (auto _ : state) {
    sluice::CircuitBreaker::Permission p = breaker->TryAcquire();
    breaker->Record(p, ++i % 10 == 0 ? sluice::CircuitBreaker::Result::kFailure
                                     : sluice::CircuitBreaker::Result::kSuccess);
  }
}
BENCHMARK(BM_Breaker)->Threads(1)->Threads(2);

// The baseline: a count-based window of the last 100 outcomes under one mutex.
class RingBreaker {
 public:
  bool TryAcquire() {
    std::lock_guard<std::mutex> lock(mu_);
    return !open_;
  }
  void Record(bool failed) {
    std::lock_guard<std::mutex> lock(mu_);
    failures_ += static_cast<int>(failed) - static_cast<int>(ring_[next_]);
    ring_[next_] = failed;
    next_ = (next_ + 1) % ring_.size();
    calls_ = calls_ < static_cast<int>(ring_.size()) ? calls_ + 1 : calls_;
    open_ = calls_ >= 100 && failures_ * 2 > calls_ * 2;  // never trips here (ratio > 100 %)
  }

 private:
  std::mutex mu_;
  std::array<bool, 100> ring_{};
  size_t next_ = 0;
  int calls_ = 0, failures_ = 0;
  bool open_ = false;
};

void BM_RingBreaker(benchmark::State& state) {
  static RingBreaker breaker;
  uint64_t i = 0;
  for (auto _ : state) {
    benchmark::DoNotOptimize(breaker.TryAcquire());
    breaker.Record(++i % 10 == 0);
  }
}
BENCHMARK(BM_RingBreaker)->Threads(1)->Threads(2);

void BM_ClassifyBody(benchmark::State& state) {
  const std::string body =
      R"({"error":{"message":"This model's maximum context length is 8192 tokens. However, your )"
      R"(messages resulted in 9000 tokens.","type":"invalid_request_error","param":"messages",)"
      R"("code":"context_length_exceeded"}})";
  for (auto _ : state) {
    benchmark::DoNotOptimize(sluice::Classify({.http_status = 400, .error_body = body}));
  }
}
BENCHMARK(BM_ClassifyBody);

}  // namespace

BENCHMARK_MAIN();
