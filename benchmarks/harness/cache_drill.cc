#include "cache_drill.h"

#include <algorithm>
#include <cstdio>
#include <map>
#include <queue>
#include <random>
#include <string>
#include <vector>

#include "sluice/response_cache.h"
#include "zipf.h"

namespace harness {
namespace {

constexpr int64_t kNanos = 1'000'000'000;

struct Arrival {
  int64_t at;
  int question;
};

// An upstream call that answers at `at`.
struct Answer {
  int64_t at;
  int question;
  bool operator>(const Answer& o) const { return at > o.at; }
};

}  // namespace

CacheDrillOutcome RunCacheDrill(const CacheScenario& s) {
  sluice::ManualClock clock;
  auto cache = sluice::ResponseCache::Create({.max_bytes = s.max_bytes, .shards = 4}, &clock).value();
  std::mt19937_64 rng(s.seed);
  const bench::Zipf faq(s.questions, s.zipf);
  std::exponential_distribution<double> gap(s.rps);
  std::uniform_real_distribution<double> unit(0, 1);

  std::vector<sluice::CacheKey> keys;
  auto key_of = [&](int q) -> const sluice::CacheKey& {
    while (static_cast<int>(keys.size()) <= q) {
      const int i = static_cast<int>(keys.size());
      keys.push_back(sluice::MakeCacheKey(R"({"model":"qwen-turbo","messages":[{"role":"user",)"
                                          R"("content":"question )" + std::to_string(i) + "\"}]}",
                                          "app-1").value());
    }
    return keys[static_cast<size_t>(q)];
  };

  CacheDrillOutcome out;
  std::vector<double> latencies;
  std::priority_queue<Answer, std::vector<Answer>, std::greater<>> upstream;
  // Per question in flight: the leader's ticket and the followers (with their arrival times).
  std::map<int, sluice::Lead> leads;
  std::map<int, std::vector<std::pair<sluice::Wait, int64_t>>> followers;
  std::map<int, int64_t> lead_arrival;
  int next_one_off = s.questions;
  double t = gap(rng);
  while (t < s.seconds || !upstream.empty()) {
    const int64_t arrival = t < s.seconds ? static_cast<int64_t>(t * kNanos) : INT64_MAX;
    if (!upstream.empty() && upstream.top().at <= arrival) {
      const Answer a = upstream.top();
      upstream.pop();
      clock.SetNanos(a.at);
      leads.at(a.question).Complete({.body = std::string(static_cast<size_t>(s.answer_bytes), 'a')});
      leads.erase(a.question);
      latencies.push_back(static_cast<double>(a.at - lead_arrival[a.question]) / kNanos);
      for (auto& [wait, arrived] : followers[a.question]) {
        if (wait.ready() && wait.Result().hit) latencies.push_back(static_cast<double>(a.at - arrived) / kNanos);
      }
      followers.erase(a.question);
      continue;
    }
    clock.SetNanos(arrival);
    ++out.requests;
    const int q = unit(rng) < s.one_off_share ? next_one_off++ : faq(rng);
    sluice::FetchResult r = cache->Fetch(key_of(q));
    if (r.hit) {
      ++out.hits;
      latencies.push_back(0);
    } else if (r.lead) {
      ++out.upstream_calls;
      leads.emplace(q, std::move(*r.lead));
      lead_arrival[q] = arrival;
      upstream.push({arrival + static_cast<int64_t>(s.upstream_latency * kNanos), q});
    } else {
      ++out.merged;
      followers[q].emplace_back(std::move(*r.wait), arrival);
    }
    t += gap(rng);
  }
  std::sort(latencies.begin(), latencies.end());
  if (!latencies.empty()) {
    out.p50_latency = latencies[latencies.size() / 2];
    double total = 0;
    for (double l : latencies) total += l;
    out.mean_latency = total / static_cast<double>(latencies.size());
  }
  const auto stats = cache->stats();
  out.bytes = stats.bytes;
  out.evictions = stats.evictions;
  out.rejected = stats.rejected;
  return out;
}

void PrintCacheDrillReport(const CacheScenario& s, const CacheDrillOutcome& o, std::ostream& os) {
  char line[512];
  std::snprintf(line, sizeof(line),
                "\nsluice harness: repeated questions through ResponseCache, %.0f req/s for %.0f s; "
                "%.0f%% from a FAQ of %d questions (Zipf %.2f), %.0f%% asked once; upstream "
                "answers take %.1f s; %lld MiB cache (virtual time)\n\n",
                s.rps, s.seconds, 100 * (1 - s.one_off_share), s.questions, s.zipf,
                100 * s.one_off_share, s.upstream_latency,
                static_cast<long long>(s.max_bytes >> 20));
  os << line;
  const double n = static_cast<double>(o.requests);
  std::snprintf(line, sizeof(line),
                "  requests %lld: %lld hits (%.1f%%), %lld merged into another caller's upstream "
                "call (%.1f%%), %lld upstream calls\n"
                "  upstream calls saved: %lld of %lld (%.1f%%); mean latency %.2f s (%.1f s "
                "without the cache), median %.2f s\n"
                "  cache: %.1f MiB used, %lld evictions, %lld answers turned away by the "
                "admission filter\n",
                static_cast<long long>(o.requests), static_cast<long long>(o.hits), 100 * o.hits / n,
                static_cast<long long>(o.merged), 100 * o.merged / n,
                static_cast<long long>(o.upstream_calls),
                static_cast<long long>(o.requests - o.upstream_calls),
                static_cast<long long>(o.requests),
                100 * static_cast<double>(o.requests - o.upstream_calls) / n, o.mean_latency,
                s.upstream_latency, o.p50_latency, static_cast<double>(o.bytes) / (1 << 20),
                static_cast<long long>(o.evictions), static_cast<long long>(o.rejected));
  os << line;
}

}  // namespace harness
