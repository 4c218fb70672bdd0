// Google Benchmark micro benchmarks of the admission objects, side by side with the mutex + hash
// map baseline (mutex_map_baseline.h). Run: build/dev/benchmarks/limiter_bench
//
// "hot key" = one key decided again and again (the per-tenant limiter of a busy tenant); the
// limits are large so nearly every decision is an admission (the common, slower path).
#include <benchmark/benchmark.h>

#include <memory>
#include <random>
#include <string>
#include <vector>

#include "mutex_map_baseline.h"
#include "sluice/sluice.hpp"

namespace {

constexpr char kHotKey[] = "tenant-42:app-7";

std::unique_ptr<sluice::RateLimiter> HotLimiter(const sluice::Clock* clock = sluice::Clock::Steady(),
                                                int windows = 1) {
  sluice::RateLimiter::Options o;
  o.windows = {sluice::Window::PerSecond(1'000'000'000, 1'000'000'000)};
  if (windows > 1) o.windows.push_back(sluice::Window::PerDay(1'000'000'000'000));
  return *sluice::RateLimiter::Create(o, clock);
}

// One limiter shared by all threads of a multi-threaded benchmark.
sluice::RateLimiter* SharedLimiter() {
  static sluice::RateLimiter* limiter = HotLimiter().release();
  return limiter;
}
sluice::RateLimiter* SharedTscLimiter() {
  static sluice::RateLimiter* limiter = HotLimiter(sluice::Clock::Tsc()).release();
  return limiter;
}
MutexMapTokenBucket* SharedBaseline() {
  static auto* baseline = new MutexMapTokenBucket(1e9, 1e9);
  return baseline;
}

void BM_RateLimiter_HotKey_Allow(benchmark::State& state) {
  auto* rl = SharedLimiter();
  for (auto _ : state) benchmark::DoNotOptimize(rl->Allow(kHotKey));
}
BENCHMARK(BM_RateLimiter_HotKey_Allow)->Threads(1)->Threads(2)->UseRealTime();

void BM_RateLimiter_HotKey_Decision(benchmark::State& state) {
  auto rl = HotLimiter();
  for (auto _ : state) benchmark::DoNotOptimize(rl->TryAcquire(kHotKey));
}
BENCHMARK(BM_RateLimiter_HotKey_Decision);

void BM_RateLimiter_HotKey_TwoWindows(benchmark::State& state) {
  auto rl = HotLimiter(sluice::Clock::Steady(), 2);
  for (auto _ : state) benchmark::DoNotOptimize(rl->Allow(kHotKey));
}
BENCHMARK(BM_RateLimiter_HotKey_TwoWindows);

void BM_RateLimiter_HotKey_CoarseClock(benchmark::State& state) {
  auto rl = HotLimiter(sluice::Clock::CoarseSteady());
  for (auto _ : state) benchmark::DoNotOptimize(rl->Allow(kHotKey));
}
BENCHMARK(BM_RateLimiter_HotKey_CoarseClock);

// The timestamp-counter clock (Clock::Tsc(); CLOCK_MONOTONIC where the counter is unusable: the
// "tsc" counter says which ran).
void BM_RateLimiter_HotKey_TscClock(benchmark::State& state) {
  auto* rl = SharedTscLimiter();
  for (auto _ : state) benchmark::DoNotOptimize(rl->Allow(kHotKey));
  state.counters["tsc"] = benchmark::Counter(sluice::Clock::TscStatus().uses_tsc ? 1 : 0,
                                             benchmark::Counter::kAvgThreads);
}
BENCHMARK(BM_RateLimiter_HotKey_TscClock)->Threads(1)->Threads(2)->UseRealTime();

// The decision alone: the caller passes the time (as a server that already read it would).
void BM_RateLimiter_HotKey_GivenTime(benchmark::State& state) {
  auto rl = HotLimiter();
  int64_t now = sluice::Clock::Steady()->NowNanos();
  for (auto _ : state) benchmark::DoNotOptimize(rl->TryAcquireAt(kHotKey, 1, ++now));
}
BENCHMARK(BM_RateLimiter_HotKey_GivenTime);

void BM_ClockRead_Steady(benchmark::State& state) {
  const sluice::Clock* clock = sluice::Clock::Steady();
  for (auto _ : state) benchmark::DoNotOptimize(clock->NowNanos());
}
BENCHMARK(BM_ClockRead_Steady);

void BM_ClockRead_CoarseSteady(benchmark::State& state) {
  const sluice::Clock* clock = sluice::Clock::CoarseSteady();
  for (auto _ : state) benchmark::DoNotOptimize(clock->NowNanos());
}
BENCHMARK(BM_ClockRead_CoarseSteady);

void BM_ClockRead_Tsc(benchmark::State& state) {
  const sluice::Clock* clock = sluice::Clock::Tsc();
  for (auto _ : state) benchmark::DoNotOptimize(clock->NowNanos());
}
BENCHMARK(BM_ClockRead_Tsc);

void BM_Baseline_MutexMap_HotKey(benchmark::State& state) {
  auto* baseline = SharedBaseline();
  const sluice::Clock* clock = sluice::Clock::Steady();
  for (auto _ : state) benchmark::DoNotOptimize(baseline->Allow(kHotKey, clock->NowNanos()));
}
BENCHMARK(BM_Baseline_MutexMap_HotKey)->Threads(1)->Threads(2)->UseRealTime();

std::vector<std::string> DistinctKeys(int64_t n) {
  std::vector<std::string> keys;
  keys.reserve(n);
  for (int64_t i = 0; i < n; ++i) keys.push_back("tenant:" + std::to_string(i * 7919 % n));
  return keys;
}

// 1M distinct keys, all mid-window, decided in a random order (cache misses included).
void RateLimiter1MKeys(benchmark::State& state, const sluice::Clock* clock) {
  const int64_t n = state.range(0);
  static const std::vector<std::string> keys = DistinctKeys(n);
  sluice::RateLimiter::Options o;
  o.windows = {sluice::Window::PerHour(1'000'000, 1'000'000)};
  o.max_keys = n;
  auto rl = *sluice::RateLimiter::Create(o, clock);
  for (const auto& k : keys) rl->Allow(k);
  std::mt19937_64 rng(1);
  std::vector<uint32_t> order(1 << 16);
  for (auto& i : order) i = static_cast<uint32_t>(rng() % n);
  size_t i = 0;
  for (auto _ : state) benchmark::DoNotOptimize(rl->Allow(keys[order[i++ & 0xffff]]));
  state.counters["keys"] = static_cast<double>(rl->key_count());
  state.counters["bytes_per_key"] = static_cast<double>(rl->memory_bytes()) / rl->key_count();
  state.counters["table_MB"] = static_cast<double>(rl->memory_bytes()) / (1 << 20);
}
void BM_RateLimiter_1MKeys(benchmark::State& state) {
  RateLimiter1MKeys(state, sluice::Clock::Steady());
}
BENCHMARK(BM_RateLimiter_1MKeys)->Arg(1'000'000)->Unit(benchmark::kNanosecond);
void BM_RateLimiter_1MKeys_TscClock(benchmark::State& state) {
  RateLimiter1MKeys(state, sluice::Clock::Tsc());
}
BENCHMARK(BM_RateLimiter_1MKeys_TscClock)->Arg(1'000'000)->Unit(benchmark::kNanosecond);

void BM_Baseline_MutexMap_1MKeys(benchmark::State& state) {
  const int64_t n = state.range(0);
  static const std::vector<std::string> keys = DistinctKeys(n);
  MutexMapTokenBucket baseline(1e6 / 3600, 1e6);
  const sluice::Clock* clock = sluice::Clock::Steady();
  for (const auto& k : keys) baseline.Allow(k, clock->NowNanos());
  std::mt19937_64 rng(1);
  std::vector<uint32_t> order(1 << 16);
  for (auto& i : order) i = static_cast<uint32_t>(rng() % n);
  size_t i = 0;
  for (auto _ : state) {
    benchmark::DoNotOptimize(baseline.Allow(keys[order[i++ & 0xffff]], clock->NowNanos()));
  }
}
BENCHMARK(BM_Baseline_MutexMap_1MKeys)->Arg(1'000'000);

void BM_LeakyBucket_HotKey(benchmark::State& state) {
  sluice::LeakyBucket::Options o;
  o.rate = 1'000'000'000;
  o.burst = 1'000'000'000;
  auto bucket = *sluice::LeakyBucket::Create(o);
  for (auto _ : state) benchmark::DoNotOptimize(bucket->TryAcquire(kHotKey));
}
BENCHMARK(BM_LeakyBucket_HotKey);

void BM_TokenBudget_ReserveSettle(benchmark::State& state) {
  sluice::TokenBudget::Options o;
  o.windows = {sluice::Window::PerMinute(50'000'000'000)};  // never binds
  auto budget = *sluice::TokenBudget::Create(o);
  for (auto _ : state) {
    auto r = budget->TryReserve(kHotKey, 1000);
    benchmark::DoNotOptimize(r->Settle(900));
  }
}
BENCHMARK(BM_TokenBudget_ReserveSettle);

void BM_ConcurrencyLimiter_AcquireRelease(benchmark::State& state) {
  sluice::ConcurrencyLimiter::Options o;
  o.max_in_flight = 1000;
  auto cl = *sluice::ConcurrencyLimiter::Create(o);
  for (auto _ : state) {
    auto permit = cl->TryAcquire(kHotKey);
    benchmark::DoNotOptimize(permit.held());
  }
}
BENCHMARK(BM_ConcurrencyLimiter_AcquireRelease);

}  // namespace

// Exact sliding windows beside GCRA, one hot key, process scope, the same shape (1000 per ms)
// and the time given, advancing 1 us a call: every decision is an admission, and in the sliding
// window the oldest of the last 1000 leaves exactly as the next arrives.
std::unique_ptr<sluice::RateLimiter> ShapedLimiter(sluice::WindowKind kind) {
  sluice::RateLimiter::Options o;
  o.windows = {sluice::Window{1000, absl::Milliseconds(1), 0, kind}};
  return *sluice::RateLimiter::Create(o);
}
void BM_HotKey_GivenTime_Gcra1000PerMs(benchmark::State& state) {
  auto rl = ShapedLimiter(sluice::WindowKind::kGcra);
  int64_t now = sluice::Clock::Steady()->NowNanos();
  for (auto _ : state) benchmark::DoNotOptimize(rl->TryAcquireAt(kHotKey, 1, now += 1000));
}
BENCHMARK(BM_HotKey_GivenTime_Gcra1000PerMs);
void BM_HotKey_GivenTime_Sliding1000PerMs(benchmark::State& state) {
  auto rl = ShapedLimiter(sluice::WindowKind::kSliding);
  int64_t now = sluice::Clock::Steady()->NowNanos();
  for (auto _ : state) benchmark::DoNotOptimize(rl->TryAcquireAt(kHotKey, 1, now += 1000));
}
BENCHMARK(BM_HotKey_GivenTime_Sliding1000PerMs);
// Allow() on the real clock: after the first 1000 of each ms, refusals (the common case of a key
// over its limit), one thread and two on one key.
sluice::RateLimiter* SharedSlidingLimiter() {
  static sluice::RateLimiter* limiter = ShapedLimiter(sluice::WindowKind::kSliding).release();
  return limiter;
}
void BM_HotKey_Allow_Sliding1000PerMs(benchmark::State& state) {
  auto* rl = SharedSlidingLimiter();
  for (auto _ : state) benchmark::DoNotOptimize(rl->Allow(kHotKey));
}
BENCHMARK(BM_HotKey_Allow_Sliding1000PerMs)->Threads(1)->Threads(2)->UseRealTime();

BENCHMARK_MAIN();
