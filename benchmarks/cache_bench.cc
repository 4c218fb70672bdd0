// Google Benchmark: ResponseCache hits and misses per second on 1 and 2 threads, and the cost of
// building a cache key. Run: build/dev/benchmarks/cache_bench
//
// BM_Hit2KB:        Lookup of a present key whose answer is 2 KiB (budget: <= 300 ns).
// BM_MissAndInsert: Lookup of an absent key, then Insert of a 2 KiB answer (evicting).
// BM_MakeCacheKey:  canonicalise + XXH3-128 a 1 KiB chat request body.
#include <benchmark/benchmark.h>

#include <memory>
#include <mutex>
#include <random>
#include <string>
#include <vector>

#include "sluice/response_cache.h"

namespace {

constexpr int kKeys = 10000;

struct Fixture {
  std::unique_ptr<sluice::ResponseCache> cache;
  std::vector<sluice::CacheKey> keys;
};

Fixture& Shared() {
  static Fixture f;
  static std::once_flag once;
  std::call_once(once, [] {
    f.cache = sluice::ResponseCache::Create({.max_bytes = int64_t{64} << 20}).value();
    for (int i = 0; i < 2 * kKeys; ++i) {
      f.keys.push_back(sluice::MakeCacheKey(R"({"model":"qwen","messages":[{"role":"user","content":"q)" +
                                            std::to_string(i) + "\"}]}", "app").value());
    }
    for (int i = 0; i < kKeys; ++i) f.cache->Put(f.keys[i], {.body = std::string(2048, 'x')});
  });
  return f;
}

void BM_Hit2KB(benchmark::State& state) {
  Fixture& f = Shared();
  std::mt19937_64 rng(static_cast<uint64_t>(state.thread_index()));
  for (auto _ : state) {
    benchmark::DoNotOptimize(f.cache->Get(f.keys[rng() % kKeys]));
  }
}
BENCHMARK(BM_Hit2KB)->Threads(1)->Threads(2);

void BM_MissAndInsert(benchmark::State& state) {
  auto cache = sluice::ResponseCache::Create({.max_bytes = int64_t{4} << 20, .admission = false}).value();
  Fixture& f = Shared();
  size_t i = static_cast<size_t>(state.thread_index());
  for (auto _ : state) {
    const sluice::CacheKey& key = f.keys[kKeys + (i++ % kKeys)];
    if (!cache->Get(key)) cache->Put(key, {.body = std::string(2048, 'y')});
  }
}
BENCHMARK(BM_MissAndInsert)->Threads(1)->Threads(2);

void BM_MakeCacheKey(benchmark::State& state) {
  const std::string body =
      R"({"model":"gpt-4o","temperature":0.7,"stream":true,"user":"u-1","messages":[)"
      R"({"role":"system","content":")" + std::string(400, 's') + R"("},)"
      R"({"role":"user","content":")" + std::string(500, 'u') + R"("}]})";
  for (auto _ : state) benchmark::DoNotOptimize(sluice::MakeCacheKey(body, "tenant-7"));
}
BENCHMARK(BM_MakeCacheKey);

}  // namespace

BENCHMARK_MAIN();
