// The ResponseCache's Redis tier against a real redis-server the test starts on a free port:
// write-through, read-through that fills the process tier with Redis's remaining TTL, merged
// misses during a read, records that are not the answer, and Redis killed mid-run.
#include <hiredis/hiredis.h>

#include <catch2/catch.hpp>

#include <chrono>
#include <string>
#include <thread>
#include <vector>

#include "cluster_test_support.h"
#include "local_redis.h"
#include "sluice/response_cache.h"
#include "test_support.h"

using sluice::CachedResponse;
using sluice::CacheKey;
using sluice::FetchResult;
using sluice::ManualClock;
using sluice::ResponseCache;
using sluice_test::ErrorOf;
using sluice_test::Value;

namespace {

CacheKey Key(int i) {
  return Value(sluice::MakeCacheKey(
      R"({"model":"m","messages":[{"role":"user","content":"q)" + std::to_string(i) + "\"}]}",
      "tenant"));
}

std::unique_ptr<ResponseCache> Cache(std::shared_ptr<sluice::RedisStore> store,
                                     const sluice::Clock* clock = sluice::Clock::Steady(),
                                     std::string name = "answers") {
  ResponseCache::Options o;
  o.max_bytes = 1 << 20;
  o.shards = 2;
  o.redis = std::move(store);
  o.redis_name = std::move(name);
  return Value(ResponseCache::Create(o, clock));
}

// A store whose commands do not time out under a loaded sanitizer run (a timed-out read is a
// miss, which would hide what a test checks); Redis killed still fails at once.
std::shared_ptr<sluice::RedisStore> Store(int port) {
  return sluice_test::Store(port, /*reconnect=*/absl::Milliseconds(50), absl::Seconds(2));
}

// Waits for a Fetch's wait (Redis answers within the store's command timeout) and returns it.
FetchResult Settle(FetchResult r) {
  if (!r.wait) return r;
  r.wait->Block();
  return r.wait->Result();
}

// A command on the test's Redis, bypassing sluice.
std::string RawCommand(int port, const std::vector<std::string>& argv) {
  timeval tv{1, 0};
  redisContext* c = redisConnectWithTimeout("127.0.0.1", port, tv);
  std::vector<const char*> ptrs;
  std::vector<size_t> lens;
  for (const auto& a : argv) ptrs.push_back(a.data()), lens.push_back(a.size());
  auto* r = static_cast<redisReply*>(
      redisCommandArgv(c, static_cast<int>(argv.size()), ptrs.data(), lens.data()));
  std::string out;
  if (r != nullptr && r->type == REDIS_REPLY_STRING) out.assign(r->str, r->len);
  if (r != nullptr && r->type == REDIS_REPLY_INTEGER) out = std::to_string(r->integer);
  if (r != nullptr) freeReplyObject(r);
  redisFree(c);
  return out;
}

std::string RedisKeyOf(const CacheKey& key) { return "sluice:answers:" + key.DigestHex(); }

// Polls (real time: Redis is a real server) until `done` or 10 s.
template <typename F>
bool Eventually(F done) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (!done()) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  return true;
}

}  // namespace

TEST_CASE("redis tier: an answer one cache stores is a hit for another, with Redis's TTL") {
  LocalRedis redis;
  auto store = Store(redis.port());
  auto writer = Cache(store);
  ManualClock reader_clock;
  auto reader = Cache(store, &reader_clock);
  const CacheKey key = Key(1);

  REQUIRE(writer->Put(key, {.body = "the answer"}, absl::Seconds(30)));
  REQUIRE(Eventually([&] { return writer->stats().redis_writes == 1; }));
  const int64_t pttl = std::stoll(RawCommand(redis.port(), {"PTTL", RedisKeyOf(key)}));
  CHECK(pttl > 29'000);
  CHECK(pttl <= 30'000);

  CHECK(reader->Get(key) == nullptr);  // Lookup stays in process
  FetchResult r = reader->Fetch(key);
  REQUIRE(r.wait.has_value());  // the process tier missed: Redis is asked, the caller waits
  r = Settle(std::move(r));
  REQUIRE(r.hit != nullptr);
  CHECK(r.hit->body == "the answer");
  CHECK(reader->stats().redis_hits == 1);

  // The process tier now has it, for as long as Redis still keeps it.
  REQUIRE(reader->Get(key) != nullptr);
  reader_clock.Advance(absl::Seconds(29));
  CHECK(reader->Get(key) != nullptr);
  reader_clock.Advance(absl::Seconds(2));
  CHECK(reader->Get(key) == nullptr);
}

TEST_CASE("redis tier: a miss there makes the caller the leader, and its answer is shared") {
  LocalRedis redis;
  auto store = Store(redis.port());
  auto first = Cache(store);
  auto second = Cache(store);
  const CacheKey key = Key(2);

  FetchResult r = Settle(first->Fetch(key));
  REQUIRE(r.lead.has_value());
  CHECK(first->stats().redis_misses == 1);
  CHECK(first->stats().leader_failovers == 0);  // a Redis miss is not a failover
  r.lead->Complete({.chunks = {"data: a\n\n", "data: [DONE]\n\n"}, .streamed = true});
  REQUIRE(Eventually([&] { return first->stats().redis_writes == 1; }));

  FetchResult other = Settle(second->Fetch(key));
  REQUIRE(other.hit != nullptr);
  CHECK(other.hit->streamed);
  CHECK(other.hit->chunks == std::vector<std::string>{"data: a\n\n", "data: [DONE]\n\n"});

  // Erase removes it from Redis too.
  CHECK(second->Erase(key));
  REQUIRE(Eventually([&] { return RawCommand(redis.port(), {"EXISTS", RedisKeyOf(key)}) == "0"; }));
}

TEST_CASE("redis tier: identical misses during the read wait on it: one read, one leader") {
  LocalRedis redis;
  auto store = Store(redis.port());
  auto cache = Cache(store);
  const CacheKey key = Key(3);
  redis.Pause();  // hold the read in flight
  std::vector<FetchResult> fetches;
  for (int i = 0; i < 10; ++i) fetches.push_back(cache->Fetch(key));
  for (const FetchResult& f : fetches) REQUIRE(f.wait.has_value());
  redis.Resume();
  int leads = 0, hits = 0;
  for (FetchResult& f : fetches) {
    f = Settle(std::move(f));
    if (f.lead) {
      ++leads;
      f.lead->Complete({.body = "answer"});
    }
    if (f.hit) ++hits;
  }
  CHECK(leads == 1);  // the first caller; the other nine waited for its answer
  CHECK(hits == 9);
  const ResponseCache::Stats s = cache->stats();
  CHECK(s.merged_waits == 9);
  CHECK(s.redis_misses + s.redis_errors == 1);
}

TEST_CASE("redis tier: a record that is not this question's answer reads as a miss") {
  LocalRedis redis;
  auto store = Store(redis.port());
  auto cache = Cache(store);
  auto other = Cache(store);

  const CacheKey garbage = Key(4);
  RawCommand(redis.port(), {"SET", RedisKeyOf(garbage), "not a sluice record"});
  FetchResult r = Settle(cache->Fetch(garbage));
  CHECK(r.lead.has_value());
  CHECK(cache->stats().redis_errors == 1);

  // A well-formed record of another question under this key (a forged digest collision).
  const CacheKey asked = Key(5);
  const CacheKey stored = Key(6);
  REQUIRE(other->Put(stored, {.body = "answer to 6"}));
  REQUIRE(Eventually([&] { return other->stats().redis_writes == 1; }));
  const std::string record = RawCommand(redis.port(), {"GET", RedisKeyOf(stored)});
  RawCommand(redis.port(), {"SET", RedisKeyOf(asked), record});
  r = Settle(cache->Fetch(asked));
  CHECK(r.lead.has_value());
  CHECK(cache->stats().collisions == 1);
}

TEST_CASE("redis tier: Redis killed mid-run: every fetch ends, the process tier keeps working") {
  LocalRedis redis;
  auto store = Store(redis.port());
  auto cache = Cache(store);
  for (int i = 0; i < 50; ++i) REQUIRE(cache->Put(Key(i), {.body = "kept " + std::to_string(i)}));
  REQUIRE(Eventually([&] { return cache->stats().redis_writes == 50; }));

  int hits = 0, leads = 0;
  for (int i = 0; i < 400; ++i) {
    if (i == 100) redis.Kill();
    // Old keys hit in process; new keys go to Redis, which fails once it is gone.
    FetchResult r = Settle(cache->Fetch(Key(i % 2 == 0 ? i % 50 : 1000 + i)));
    if (r.hit) ++hits;
    if (r.lead) {
      ++leads;
      r.lead->Complete({.body = "fresh"});  // stored in process whatever Redis does
    }
  }
  CHECK(hits == 200);
  CHECK(leads == 200);
  const ResponseCache::Stats s = cache->stats();
  CHECK(s.redis_errors >= 1);
  CHECK(cache->Get(Key(1399)) != nullptr);  // written after the kill: kept in process
  CHECK_FALSE(store->stats().connected);

  // Back again: writes reach the new (empty) Redis and another cache reads them.
  REQUIRE(redis.Start());
  REQUIRE(Eventually([&] {
    cache->Put(Key(5000), {.body = "after the restart"});
    return RawCommand(redis.port(), {"EXISTS", RedisKeyOf(Key(5000))}) == "1";
  }));
  auto reader = Cache(store);
  FetchResult r = Settle(reader->Fetch(Key(5000)));
  REQUIRE(r.hit != nullptr);
  CHECK(r.hit->body == "after the restart");
}

TEST_CASE("redis tier: a cache destroyed while its read is in flight ends the wait") {
  LocalRedis redis;
  auto store = Store(redis.port());
  auto cache = Cache(store);
  redis.Pause();
  FetchResult r = cache->Fetch(Key(7));
  REQUIRE(r.wait.has_value());
  cache.reset();
  redis.Resume();
  r = Settle(std::move(r));
  CHECK(r.lead.has_value());  // the cache is gone: the caller leads for itself
}

TEST_CASE("redis tier: a bad redis_name is named") {
  LocalRedis redis;
  ResponseCache::Options o;
  o.redis = Store(redis.port());
  o.redis_name = "no spaces";
  CHECK(ErrorOf(ResponseCache::Create(o)).find("redis_name") != std::string::npos);
  o.redis_name = "";
  CHECK(ErrorOf(ResponseCache::Create(o)).find("redis_name") != std::string::npos);
}
