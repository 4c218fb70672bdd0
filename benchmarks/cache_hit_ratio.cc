// Hit ratio of ResponseCache against a plain LRU at equal memory, on the request streams of
// issue 6: Zipf(0.8) and Zipf(0.99) over 100,000 distinct questions, and Zipf(0.99) polluted by
// one-off scans (every third request a question never asked before). Answers are 500-4,000 bytes
// (2.2 KiB on average); every cache counts keys, answers and the same per-entry overhead against
// the same byte budget. Run: build/dev/benchmarks/cache_hit_ratio
#include <cmath>
#include <cstdio>
#include <list>
#include <random>
#include <string>
#include <unordered_map>
#include <vector>

#include "sluice/response_cache.h"
#include "zipf.h"

namespace {

constexpr int kQuestions = 100000;
constexpr int kRequests = 1000000;

// A plain byte-bounded LRU: the baseline.
class Lru {
 public:
  explicit Lru(int64_t capacity) : capacity_(capacity) {}
  bool Lookup(int key) {
    auto it = index_.find(key);
    if (it == index_.end()) return false;
    order_.splice(order_.begin(), order_, it->second);
    return true;
  }
  void Insert(int key, int64_t bytes) {
    while (used_ + bytes > capacity_ && !order_.empty()) {
      used_ -= order_.back().second;
      index_.erase(order_.back().first);
      order_.pop_back();
    }
    order_.emplace_front(key, bytes);
    index_[key] = order_.begin();
    used_ += bytes;
  }

 private:
  int64_t capacity_, used_ = 0;
  std::list<std::pair<int, int64_t>> order_;
  std::unordered_map<int, std::list<std::pair<int, int64_t>>::iterator> index_;
};

struct Result {
  double sluice, slru, lru;
};

Result Run(double s, double scan_share, int64_t budget) {
  std::vector<sluice::CacheKey> keys;
  std::vector<std::string> answers;
  std::mt19937_64 rng(42);
  const int universe = kQuestions + (scan_share > 0 ? kRequests : 0);
  keys.reserve(static_cast<size_t>(universe));
  for (int i = 0; i < universe; ++i) {
    keys.push_back(sluice::MakeCacheKey(R"({"model":"qwen","messages":[{"role":"user","content":"q)" +
                                        std::to_string(i) + "\"}]}", "app").value());
    answers.emplace_back(500 + rng() % 3500, 'x');
  }
  auto tinylfu = sluice::ResponseCache::Create({.max_bytes = budget, .shards = 1}).value();
  auto slru = sluice::ResponseCache::Create({.max_bytes = budget, .shards = 1, .admission = false}).value();
  Lru lru(budget);
  const bench::Zipf zipf(kQuestions, s);
  int64_t hits_tinylfu = 0, hits_slru = 0, hits_lru = 0;
  int next_scan = kQuestions;
  std::bernoulli_distribution scan(scan_share);
  for (int r = 0; r < kRequests; ++r) {
    const int q = scan_share > 0 && scan(rng) ? next_scan++ : zipf(rng);
    const sluice::CacheKey& key = keys[static_cast<size_t>(q)];
    const std::string& answer = answers[static_cast<size_t>(q)];
    if (tinylfu->Get(key)) ++hits_tinylfu; else tinylfu->Put(key, {.body = answer});
    if (slru->Get(key)) ++hits_slru; else slru->Put(key, {.body = answer});
    if (lru.Lookup(q)) {
      ++hits_lru;
    } else {
      lru.Insert(q, static_cast<int64_t>(key.canonical.size() + answer.size()) +
                        sluice::ResponseCache::kEntryOverhead);
    }
  }
  return {static_cast<double>(hits_tinylfu) / kRequests, static_cast<double>(hits_slru) / kRequests,
          static_cast<double>(hits_lru) / kRequests};
}

}  // namespace

int main() {
  std::printf("Hit ratio at equal memory: %d requests over %d questions, answers 500-4000 B\n\n",
              kRequests, kQuestions);
  std::printf("| stream | budget | plain LRU | sluice SLRU (no admission) | sluice TinyLFU + SLRU | vs LRU |\n");
  std::printf("|---|---:|---:|---:|---:|---:|\n");
  struct Case { const char* name; double s; double scan; };
  for (const Case& c : {Case{"Zipf 0.8", 0.8, 0}, Case{"Zipf 0.99", 0.99, 0},
                        Case{"Zipf 0.99 + 1/3 one-off scans", 0.99, 1.0 / 3}}) {
    for (int64_t mib : {8, 32}) {
      const Result r = Run(c.s, c.scan, mib << 20);
      std::printf("| %s | %lld MiB | %.1f%% | %.1f%% | **%.1f%%** | %.2fx |\n", c.name,
                  static_cast<long long>(mib), 100 * r.lru, 100 * r.slru, 100 * r.sluice,
                  r.sluice / r.lru);
    }
  }
}
