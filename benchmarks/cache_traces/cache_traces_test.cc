// The cache-trace tools are right before they are fast: the replayer counts the hits one counts by
// hand and charges what the trace says, the recency stack agrees with a naive one, and each
// shape is what its description says, the same for the same seed.
#include <algorithm>
#include <cstdio>
#include <list>
#include <map>
#include <random>
#include <set>
#include <string>
#include <unistd.h>

#include <catch2/catch.hpp>

#include "recency_stack.h"
#include "replay.h"
#include "sluice/response_cache.h"
#include "shapes.h"
#include "trace.h"

namespace cache_traces {
namespace {

std::vector<Request> Trace(std::initializer_list<int64_t> ids, int64_t charge = 0) {
  std::vector<Request> t;
  for (int64_t id : ids) t.push_back({id, charge > 0 ? charge : ChargedBytes(id)});
  return t;
}

std::map<std::string, Result> ByColumn(const std::vector<Result>& results, int64_t budget) {
  std::map<std::string, Result> m;
  for (const Result& r : results) {
    if (r.budget == budget) m[r.column] = r;
  }
  return m;
}

TEST_CASE("every column hits every repeat when the whole trace fits, charged the trace's bytes") {
  const auto trace = Trace({1, 2, 1, 3, 2, 1, 40, 40});
  const int64_t budget = 1 << 20;
  const auto results = Replay(trace, {budget});
  REQUIRE(results.ok());
  const auto columns = ByColumn(*results, budget);
  REQUIRE(columns.size() == Columns().size());
  const int64_t distinct_bytes = ChargedBytes(1) + ChargedBytes(2) + ChargedBytes(3) + ChargedBytes(40);
  for (const auto& [name, r] : columns) {
    INFO(name);
    CHECK(r.requests == 8);
    CHECK(r.hits == 4);
    CHECK(r.bytes == distinct_bytes);  // the cache's own count: the same accounting everywhere
  }
}

TEST_CASE("the plain LRU evicts the least recently used, by bytes") {
  // Six entries of 10,000 bytes fit in 64 KiB. 0-5 fill it; 6 evicts 0; 1 hits; 0 evicts 2;
  // 2 evicts 3; 1 and 4 hit; 3 misses (evicting 5): 3 hits of 13.
  const auto trace = Trace({0, 1, 2, 3, 4, 5, 6, 1, 0, 2, 1, 4, 3}, 10000);
  const int64_t budget = 64 << 10;
  const auto results = Replay(trace, {budget, 1 << 20});
  REQUIRE(results.ok());
  CHECK(ByColumn(*results, budget)["lru"].hits == 3);
  CHECK(ByColumn(*results, budget)["lru"].bytes == 60000);
  // With room for all seven, every repeat hits: 13 requests, 7 distinct.
  CHECK(ByColumn(*results, 1 << 20)["lru"].hits == 6);
}

TEST_CASE("a charge its key and the entry overhead cannot make up is refused") {
  const auto results = Replay({{7, 100}}, {1 << 20});
  REQUIRE_FALSE(results.ok());
  CHECK(std::string(results.status().message()).find("question 7 charged 100") != std::string::npos);
}

TEST_CASE("a question's charge is its key, its 500-4,000 byte answer and the entry overhead") {
  for (int64_t id : {0, 9, 10, 12345, 999999, 1000000}) {
    const int64_t key = static_cast<int64_t>(QuestionKey(id).canonical.size());
    CHECK(ChargedBytes(id) == key + AnswerBytes(id) + sluice::ResponseCache::kEntryOverhead);
    CHECK(AnswerBytes(id) >= kMinAnswerBytes);
    CHECK(AnswerBytes(id) <= kMaxAnswerBytes);
  }
}

TEST_CASE("a trace file reads back as written; a bad line is named") {
  char path[] = "/tmp/cache_traces_test_XXXXXX";
  const int fd = mkstemp(path);
  REQUIRE(fd >= 0);
  close(fd);
  const auto trace = Trace({3, 1, 4, 1, 5});
  REQUIRE(WriteTrace(path, "shape=test seed=1", trace).ok());
  const auto back = ReadTrace(path);
  REQUIRE(back.ok());
  CHECK(*back == trace);
  FILE* f = std::fopen(path, "a");
  std::fputs("12 oops\n", f);
  std::fclose(f);
  const auto bad = ReadTrace(path);
  std::remove(path);
  REQUIRE_FALSE(bad.ok());
  CHECK(std::string(bad.status().message()).find(":7:") != std::string::npos);
}

TEST_CASE("the recency stack agrees with a naive move-to-front list") {
  std::mt19937_64 rng(5);
  const int requests = 3000;
  RecencyStack stack(requests);
  std::list<int64_t> naive;  // front = most recent
  for (int r = 0; r < requests; ++r) {
    const int64_t id = static_cast<int64_t>(rng() % 200);
    stack.Ask(id);
    naive.remove(id);
    naive.push_front(id);
    REQUIRE(stack.distinct() == static_cast<int64_t>(naive.size()));
    if (r % 97 == 0) {
      int64_t rank = 1;
      for (int64_t expected : naive) REQUIRE(stack.AtRank(rank++) == expected);
    }
  }
}

TEST_CASE("every shape is deterministic for a seed, and each request is charged its question") {
  const int64_t n = 30000;
  for (const ShapeInfo& shape : Shapes()) {
    INFO(shape.name);
    const auto a = Generate(shape.name, 1, n);
    const auto b = Generate(shape.name, 1, n);
    REQUIRE(a.ok());
    REQUIRE(b.ok());
    CHECK(static_cast<int64_t>(a->size()) == n);
    CHECK(*a == *b);
    for (const Request& r : *a) REQUIRE(r.charge == ChargedBytes(r.id));
    if (std::string(shape.name) != "loop") {  // the loop has no randomness
      const auto c = Generate(shape.name, 2, n);
      REQUIRE(c.ok());
      CHECK(*a != *c);
    }
  }
  CHECK_FALSE(Generate("no-such-shape", 1, 10).ok());
  CHECK_FALSE(Generate("zipf-0.8", 1, 0).ok());
}

TEST_CASE("the shapes are what they say") {
  const int64_t n = 60000;
  SECTION("scan: every third request is a question never asked before") {
    const auto t = Generate("scan", 3, n).value();
    std::set<int64_t> seen;
    for (int64_t r = 0; r < n; ++r) {
      const bool fresh = seen.insert(t[static_cast<size_t>(r)].id).second;
      if (r % 3 == 2) REQUIRE(fresh);
    }
  }
  SECTION("shifting: 2,000 questions per 25,000 requests, then a new set") {
    const auto t = Generate("shifting", 3, n).value();
    for (int64_t r = 0; r < n; ++r) {
      const int64_t id = t[static_cast<size_t>(r)].id;
      REQUIRE(id / 2000 == r / 25000);
    }
  }
  SECTION("loop: one cycle, ~1.3 x 8 MiB of charged bytes") {
    const auto t = Generate("loop", 3, n).value();
    const auto period = static_cast<size_t>(std::max_element(t.begin(), t.end(), [](auto& x, auto& y) {
                                              return x.id < y.id;
                                            })->id + 1);
    int64_t bytes = 0;
    for (size_t i = 0; i < period; ++i) bytes += t[i].charge;
    CHECK(bytes >= (int64_t{8} << 20) * 13 / 10);
    CHECK(bytes < (int64_t{8} << 20) * 13 / 10 + 5000);
    for (size_t i = period; i < t.size(); ++i) REQUIRE(t[i].id == t[i - period].id);
  }
  SECTION("recency: about a quarter new, and repeats favour the recent") {
    const auto t = Generate("recency", 3, n).value();
    std::set<int64_t> seen;
    int64_t fresh = 0, same_as_last = 0;
    for (size_t r = 0; r < t.size(); ++r) {
      fresh += seen.insert(t[r].id).second;
      same_as_last += r > 0 && t[r].id == t[r - 1].id;
    }
    // 25% drawn new, plus the depths not reached yet.
    CHECK(fresh > n / 4);
    CHECK(fresh < n / 2);
    // Depth 1 has P = 1 / H(100000, 0.9) ~ 4.5% of the 75% repeats.
    CHECK(same_as_last > n * 2 / 100);
    CHECK(same_as_last < n * 5 / 100);
  }
  SECTION("mix-change: the second half asks questions the first half never did") {
    const auto t = Generate("mix-change", 3, n).value();
    for (size_t r = 0; r < t.size() / 2; ++r) REQUIRE(t[r].id < 100000);
    int64_t fresh_ids = 0;
    for (size_t r = t.size() / 2; r < t.size(); ++r) fresh_ids += t[r].id >= 100000;
    CHECK(fresh_ids > n / 8);
  }
}

}  // namespace
}  // namespace cache_traces
