#include "sluice/response_cache.h"

#include <catch2/catch.hpp>

#include <poll.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <functional>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "test_support.h"

using sluice::CachedResponse;
using sluice::CacheKey;
using sluice::ManualClock;
using sluice::ResponseCache;
using sluice_test::ErrorOf;
using sluice_test::Value;

namespace {

// Runs `body` on `n` threads released at once, and joins them.
void RunTogether(int n, const std::function<void()>& body) {
  std::atomic<bool> go{false};
  std::vector<std::thread> threads;
  for (int t = 0; t < n; ++t) {
    threads.emplace_back([&] {
      while (!go.load()) std::this_thread::yield();
      body();
    });
  }
  go = true;
  for (auto& th : threads) th.join();
}


CacheKey Key(int i, const std::string& ns = "t") {
  return Value(sluice::MakeCacheKey(
      R"({"model":"m","messages":[{"role":"user","content":"question )" + std::to_string(i) + "\"}]}",
      ns));
}

CachedResponse Answer(size_t bytes, char fill = 'a') { return {.body = std::string(bytes, fill)}; }

std::unique_ptr<ResponseCache> Make(const sluice::Clock* clock, int64_t max_bytes = 64 << 10,
                                    bool admission = true) {
  return Value(ResponseCache::Create(
      {.max_bytes = max_bytes, .shards = 1, .admission = admission}, clock));
}

}  // namespace

TEST_CASE("cache: a hit returns the stored answer byte for byte, streamed or not") {
  ManualClock clock;
  auto cache = Make(&clock);
  CHECK(cache->Get(Key(1)) == nullptr);
  CHECK(cache->Put(Key(1), {.body = "{\"choices\":[]}"}));
  CHECK(cache->Put(Key(2), {.chunks = {"data: {\"a\":1}\n\n", "data: [DONE]\n\n"}, .streamed = true}));
  auto hit = cache->Get(Key(1));
  REQUIRE(hit != nullptr);
  CHECK(hit->body == "{\"choices\":[]}");
  auto stream = cache->Get(Key(2));
  REQUIRE(stream != nullptr);
  CHECK(stream->streamed);
  CHECK(stream->chunks == std::vector<std::string>{"data: {\"a\":1}\n\n", "data: [DONE]\n\n"});
  CHECK(cache->Get(Key(1, "other-tenant")) == nullptr);  // another namespace
  const auto s = cache->stats();
  CHECK(s.hits == 2);
  CHECK(s.misses == 2);
  CHECK(s.entries == 2);
  CHECK(cache->Erase(Key(1)));
  CHECK_FALSE(cache->Erase(Key(1)));
  CHECK(cache->Get(Key(1)) == nullptr);
}

TEST_CASE("cache: a digest collision is a miss, never another request's answer") {
  ManualClock clock;
  auto cache = Make(&clock);
  CacheKey real = Key(1);
  REQUIRE(cache->Put(real, Answer(10)));
  CacheKey forged = Key(2);
  forged.digest_hi = real.digest_hi;
  forged.digest_lo = real.digest_lo;
  CHECK(cache->Get(forged) == nullptr);
  CHECK(cache->stats().collisions == 1);
  CHECK(cache->Get(real) != nullptr);
}

TEST_CASE("cache: entries expire after their TTL (ManualClock)") {
  ManualClock clock;
  auto cache = Value(ResponseCache::Create({.max_bytes = 1 << 20, .shards = 1,
                                            .default_ttl = absl::Seconds(60)}, &clock));
  CHECK(cache->Put(Key(1), Answer(10)));
  CHECK(cache->Put(Key(2), Answer(10), absl::Seconds(5)));
  clock.Advance(absl::Seconds(5));
  CHECK(cache->Get(Key(2)) == nullptr);
  CHECK(cache->Get(Key(1)) != nullptr);
  clock.Advance(absl::Seconds(55));
  CHECK(cache->Get(Key(1)) == nullptr);
  CHECK(cache->stats().expirations == 2);
  CHECK(cache->stats().bytes == 0);
}

TEST_CASE("cache property: memory never exceeds the budget") {
  ManualClock clock;
  std::mt19937_64 rng(3);
  for (bool admission : {true, false}) {
    auto cache = Value(ResponseCache::Create({.max_bytes = 256 << 10, .shards = 4,
                                              .admission = admission}, &clock));
    for (int i = 0; i < 20000; ++i) {
      const int k = static_cast<int>(rng() % 500);
      if (rng() % 2 == 0) {
        cache->Get(Key(k));
      } else {
        cache->Put(Key(k), Answer(rng() % 8000));
      }
      REQUIRE(cache->stats().bytes <= 256 << 10);
    }
    CHECK(cache->stats().evictions > 0);
  }
}

TEST_CASE("cache: an answer larger than a shard is refused") {
  ManualClock clock;
  auto cache = Make(&clock, 64 << 10);
  CHECK_FALSE(cache->Put(Key(1), Answer(70 << 10)));
  CHECK(cache->stats().rejected == 1);
}

TEST_CASE("cache: the popular answers survive a scan of one-off requests, which TinyLFU turns away") {
  for (bool admission : {true, false}) {
    ManualClock clock;
    auto cache = Make(&clock, 256 << 10, admission);  // room for about 100 answers of 2 KiB
    // 50 hot questions, asked again and again.
    for (int round = 0; round < 5; ++round) {
      for (int i = 0; i < 50; ++i) {
        if (cache->Get(Key(i)) == nullptr) cache->Put(Key(i), Answer(2000));
      }
    }
    // A scan: 2,000 questions asked once each.
    for (int i = 1000; i < 3000; ++i) {
      if (cache->Get(Key(i)) == nullptr) cache->Put(Key(i), Answer(2000));
    }
    int hot_left = 0;
    for (int i = 0; i < 50; ++i) hot_left += cache->Get(Key(i)) != nullptr;
    INFO("admission " << admission);
    if (admission) {
      // The hot answer in the 1% window when the scan starts may lose a tie with an equally hot
      // victim; the other 49 stay.
      CHECK(hot_left >= 49);
      CHECK(cache->stats().rejected > 1500);
    } else {
      CHECK(hot_left == 50);  // the protected segment alone shelters a hot set that fits in it,
      CHECK(cache->stats().rejected == 0);  // but every one-off answer churns probation
    }
  }
}

TEST_CASE("cache: options are checked, naming the field") {
  ManualClock clock;
  CHECK_THAT(ErrorOf(ResponseCache::Create({.max_bytes = 1000}, &clock)), Catch::Contains("max_bytes"));
  CHECK_THAT(ErrorOf(ResponseCache::Create({.shards = 3}, &clock)), Catch::Contains("shards"));
  CHECK_THAT(ErrorOf(ResponseCache::Create({.default_ttl = absl::ZeroDuration()}, &clock)),
             Catch::Contains("default_ttl"));
  CHECK_THAT(ErrorOf(ResponseCache::Create({.protected_share = 1.0}, &clock)),
             Catch::Contains("protected_share"));
}

TEST_CASE("cache stress: threads look up and insert at once, the budget holds") {
  auto cache = Value(ResponseCache::Create({.max_bytes = 512 << 10, .shards = 4}));
  std::vector<CacheKey> keys;
  for (int i = 0; i < 400; ++i) keys.push_back(Key(i));
  std::atomic<int64_t> wrong{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      std::mt19937_64 rng(static_cast<uint64_t>(t));
      for (int i = 0; i < 20000; ++i) {
        const size_t k = rng() % keys.size();
        if (auto hit = cache->Get(keys[k])) {
          // Every answer stored for key k is k's: its first byte says so.
          if (hit->body.empty() || hit->body[0] != static_cast<char>('A' + k % 26)) wrong.fetch_add(1);
        } else {
          cache->Put(keys[k], Answer(500 + rng() % 3000, static_cast<char>('A' + k % 26)));
        }
      }
    });
  }
  for (auto& th : threads) th.join();
  CHECK(wrong.load() == 0);
  CHECK(cache->stats().bytes <= 512 << 10);
  CHECK(cache->stats().hits > 0);
}

TEST_CASE("single flight: followers wait for the leader, and get its answer") {
  ManualClock clock;
  auto cache = Make(&clock, 1 << 20);
  sluice::FetchResult leader = cache->Fetch(Key(1));
  REQUIRE(leader.lead);
  std::vector<sluice::FetchResult> followers;
  for (int i = 0; i < 3; ++i) followers.push_back(cache->Fetch(Key(1)));
  for (auto& f : followers) {
    REQUIRE(f.wait);
    CHECK_FALSE(f.wait->ready());
    CHECK(f.wait->fd() >= 0);
  }
  CHECK(cache->Fetch(Key(2)).lead);  // another key: its own leader
  CHECK(leader.lead->Complete({.body = "answer"}));
  for (auto& f : followers) {
    REQUIRE(f.wait->ready());
    sluice::FetchResult r = f.wait->Result();
    REQUIRE(r.hit);
    CHECK(r.hit->body == "answer");
  }
  CHECK(cache->Fetch(Key(1)).hit);  // stored
  CHECK(cache->stats().merged_waits == 3);
}

TEST_CASE("single flight: a leader that gives up passes the lead to the longest waiter") {
  ManualClock clock;
  auto cache = Make(&clock, 1 << 20);
  sluice::FetchResult first = cache->Fetch(Key(1));
  sluice::FetchResult second = cache->Fetch(Key(1));
  sluice::FetchResult third = cache->Fetch(Key(1));
  sluice::FetchResult fourth = cache->Fetch(Key(1));
  first.lead.reset();  // the upstream call failed
  REQUIRE(second.wait->ready());
  CHECK_FALSE(third.wait->ready());
  sluice::FetchResult promoted = second.wait->Result();
  REQUIRE(promoted.lead);
  CHECK_FALSE(promoted.hit);
  // The third goes away while waiting; the fourth still gets the answer.
  third.wait.reset();
  CHECK_FALSE(promoted.lead->Complete({.body = "late answer"}, absl::ZeroDuration(),
                                      /*store=*/false));
  REQUIRE(fourth.wait->ready());
  CHECK(fourth.wait->Result().hit->body == "late answer");
  CHECK(cache->Fetch(Key(1)).lead);  // not stored: the next caller leads again
  CHECK(cache->stats().leader_failovers == 1);
}

TEST_CASE("single flight: a promoted follower that goes away passes the lead on") {
  ManualClock clock;
  auto cache = Make(&clock, 1 << 20);
  sluice::FetchResult leader = cache->Fetch(Key(1));
  sluice::FetchResult a = cache->Fetch(Key(1));
  sluice::FetchResult b = cache->Fetch(Key(1));
  leader.lead->Abandon();
  REQUIRE(a.wait->ready());
  a.wait.reset();  // promoted, never took the lead
  REQUIRE(b.wait->ready());
  CHECK(b.wait->Result().lead);
}

TEST_CASE("single flight stress: 100 concurrent identical misses, one upstream call") {
  auto cache = Value(ResponseCache::Create({.max_bytes = 1 << 20, .shards = 4}));
  const CacheKey key = Key(7);
  std::atomic<int> upstream{0}, answered{0};
  RunTogether(100, [&] {
    sluice::FetchResult r = cache->Fetch(key);
    while (!r.hit) {
      if (r.lead) {
        upstream.fetch_add(1);
        // Hold the lead until the others have joined (or found the answer): the upstream
        // call "takes" that long.
        while (cache->stats().merged_waits + cache->stats().hits < 99 &&
               upstream.load() == 1) {
          std::this_thread::yield();
        }
        r.lead->Complete({.body = "the answer"});
        answered.fetch_add(1);
        return;
      }
      r.wait->Block();
      r = r.wait->Result();
    }
    if (r.hit->body == "the answer") answered.fetch_add(1);
  });
  CHECK(upstream.load() == 1);
  CHECK(answered.load() == 100);
}

namespace {
bool Readable(int fd) {
  pollfd p{.fd = fd, .events = POLLIN, .revents = 0};
  return poll(&p, 1, 0) == 1;
}
}  // namespace

TEST_CASE("stream tailing: followers get the leader's chunks as they arrive, late joiners too") {
  ManualClock clock;
  auto cache = Make(&clock, 1 << 20);
  sluice::FetchResult leader = cache->Fetch(Key(1));
  sluice::FetchResult early = cache->Fetch(Key(1));
  sluice::FetchResult whole = cache->Fetch(Key(1));  // never tails: woken only at the end
  REQUIRE(early.wait);
  CHECK(early.wait->TakeChunks().empty());  // tails from now on
  CHECK_FALSE(Readable(early.wait->fd()));
  leader.lead->Append("data: 1\n\n");
  CHECK(Readable(early.wait->fd()));
  CHECK_FALSE(Readable(whole.wait->fd()));
  CHECK(early.wait->TakeChunks() == std::vector<std::string>{"data: 1\n\n"});
  CHECK_FALSE(Readable(early.wait->fd()));  // taken: quiet until the next chunk
  CHECK(early.wait->TakeChunks().empty());
  leader.lead->Append("data: 2\n\n");
  sluice::FetchResult late = cache->Fetch(Key(1));  // joins mid-stream
  CHECK(late.wait->TakeChunks() == std::vector<std::string>{"data: 1\n\n", "data: 2\n\n"});
  CHECK(early.wait->TakeChunks() == std::vector<std::string>{"data: 2\n\n"});
  leader.lead->Append("data: [DONE]\n\n");
  CHECK(leader.lead->CompleteStream());
  REQUIRE(whole.wait->ready());
  CHECK(Readable(whole.wait->fd()));
  CHECK(whole.wait->Result().hit->chunks.size() == 3);
  for (sluice::FetchResult* f : {&early, &late}) {
    REQUIRE(f->wait->ready());
    CHECK(f->wait->chunks_taken() == 2);
    sluice::FetchResult r = f->wait->Result();
    REQUIRE(r.hit);
    REQUIRE(r.hit->streamed);
    CHECK(r.hit->chunks.size() == 3);  // the follower still sends chunks[2:]
    CHECK(r.hit->chunks[2] == "data: [DONE]\n\n");
  }
  sluice::FetchResult stored = cache->Fetch(Key(1));
  REQUIRE(stored.hit);
  CHECK(stored.hit->chunks.size() == 3);
}

TEST_CASE("stream tailing: a leader that gives up mid-stream breaks only the tailing followers") {
  ManualClock clock;
  auto cache = Make(&clock, 1 << 20);
  sluice::FetchResult leader = cache->Fetch(Key(1));
  sluice::FetchResult tailing = cache->Fetch(Key(1));
  sluice::FetchResult patient = cache->Fetch(Key(1));  // takes no chunks
  leader.lead->Append("data: partial\n\n");
  CHECK(tailing.wait->TakeChunks().size() == 1);
  leader.lead->Abandon();
  REQUIRE(tailing.wait->ready());
  sluice::FetchResult broke = tailing.wait->Result();
  CHECK(broke.broken);
  CHECK_FALSE(broke.hit);
  CHECK_FALSE(broke.lead);
  REQUIRE(patient.wait->ready());
  sluice::FetchResult next = patient.wait->Result();
  REQUIRE(next.lead);  // the next leader starts the stream over
  sluice::FetchResult joiner = cache->Fetch(Key(1));
  CHECK(joiner.wait->TakeChunks().empty());  // the broken stream's chunks are gone
  next.lead->Append("data: whole\n\n");
  CHECK(joiner.wait->TakeChunks() == std::vector<std::string>{"data: whole\n\n"});
  CHECK_FALSE(next.lead->CompleteStream(absl::ZeroDuration(), /*store=*/false));  // not stored
  CHECK(joiner.wait->Result().hit->chunks.size() == 1);
}

TEST_CASE("stream tailing stress: 100 threads, one upstream stream, every follower sees it all") {
  auto cache = Value(ResponseCache::Create({.max_bytes = 1 << 20, .shards = 4}));
  const CacheKey key = Key(8);
  constexpr int kChunks = 50;
  std::atomic<int> upstream{0}, whole{0};
  RunTogether(100, [&] {
    sluice::FetchResult r = cache->Fetch(key);
    std::vector<std::string> seen;
    if (r.lead) {
      upstream.fetch_add(1);
      while (cache->stats().merged_waits + cache->stats().hits < 99) std::this_thread::yield();
      for (int c = 0; c < kChunks; ++c) {
        seen.push_back("data: " + std::to_string(c) + "\n\n");
        r.lead->Append(seen.back());
      }
      r.lead->CompleteStream();
    } else if (r.hit) {
      seen = r.hit->chunks;
    } else {
      while (!r.wait->ready()) {
        pollfd p{.fd = r.wait->fd(), .events = POLLIN, .revents = 0};
        (void)poll(&p, 1, 100);
        for (std::string& c : r.wait->TakeChunks()) seen.push_back(std::move(c));
      }
      for (std::string& c : r.wait->TakeChunks()) seen.push_back(std::move(c));
      const size_t taken = r.wait->chunks_taken();
      sluice::FetchResult done = r.wait->Result();
      if (done.hit == nullptr) return;
      seen.insert(seen.end(), done.hit->chunks.begin() + static_cast<std::ptrdiff_t>(taken),
                  done.hit->chunks.end());
    }
    bool in_order = seen.size() == kChunks;
    for (int c = 0; in_order && c < kChunks; ++c) {
      in_order = seen[static_cast<size_t>(c)] == "data: " + std::to_string(c) + "\n\n";
    }
    if (in_order) whole.fetch_add(1);
  });
  CHECK(upstream.load() == 1);
  CHECK(whole.load() == 100);
}

TEST_CASE("cache: answers that call tools are kept out when configured so") {
  ManualClock clock;
  auto keep = Value(ResponseCache::Create({.max_bytes = 1 << 20, .shards = 1}, &clock));
  auto skip = Value(ResponseCache::Create({.max_bytes = 1 << 20, .shards = 1,
                                           .store_tool_calls = false}, &clock));
  const std::string tool_answer =
      R"({"choices":[{"message":{"tool_calls":[{"id":"c1"}]},"finish_reason":"tool_calls"}]})";
  const std::string quoted = R"({"choices":[{"message":{"content":"say \"tool_calls\""}}]})";
  CHECK(keep->Put(Key(1), {.body = tool_answer}));
  CHECK_FALSE(skip->Put(Key(1), {.body = tool_answer}));
  CHECK_FALSE(skip->Put(Key(2), {.chunks = {R"(data: {"choices":[{"delta":{"tool_calls":[]}}]})"},
                                    .streamed = true}));
  CHECK(skip->Put(Key(3), {.body = quoted}));  // the words inside a string are not a tool call
  sluice::FetchResult lead = skip->Fetch(Key(4));
  CHECK_FALSE(lead.lead->Complete({.body = tool_answer}));  // single flight obeys it too
  CHECK(skip->stats().skipped_tool_calls == 3);
}

TEST_CASE("cache after fork: the child keeps the entries and leads its own fetches") {
  auto cache = Value(ResponseCache::Create({.max_bytes = 1 << 20, .shards = 2}));
  REQUIRE(cache->Put(Key(1), {.body = "stored before the fork"}));
  sluice::FetchResult parent_lead = cache->Fetch(Key(2));  // in flight across the fork
  REQUIRE(parent_lead.lead);
  const pid_t pid = fork();
  if (pid == 0) {
    // No Catch2 assertions in the child: its exit code says what it saw.
    auto hit = cache->Get(Key(1));
    if (hit == nullptr || !(hit->body == "stored before the fork")) _exit(1);
    sluice::FetchResult child = cache->Fetch(Key(2));
    if (!child.lead) _exit(2);  // a wait here would never end: its leader is in the parent
    child.lead->Complete({.body = "the child's"});
    _exit(cache->Get(Key(2)) != nullptr ? 0 : 3);
  }
  int status = -1;
  REQUIRE(waitpid(pid, &status, 0) == pid);
  CHECK(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == 0);
  // The parent's flight is untouched: a follower still waits for its leader.
  sluice::FetchResult follower = cache->Fetch(Key(2));
  REQUIRE(follower.wait);
  parent_lead.lead->Complete({.body = "the parent's"});
  REQUIRE(follower.wait->ready());
  CHECK(follower.wait->Result().hit->body == "the parent's");
}

TEST_CASE("cache: a working set that moves on is served like an LRU would, not turned away") {
  // 150 questions of about 2.5 KiB (a third of the cache) asked at random, replaced by 150 new
  // ones every 3,000 requests: after each change, only the first ask of each new question can
  // miss. A filter without an adaptive window turns the newcomers away in favour of the old set's
  // well-counted answers and served about half of these (issue 19).
  ManualClock clock;
  auto cache = Make(&clock, 1 << 20);
  std::mt19937_64 rng(8);
  int64_t hits = 0, requests = 0;
  for (int phase = 0; phase < 40; ++phase) {
    for (int i = 0; i < 3000; ++i, ++requests) {
      const int q = phase * 150 + static_cast<int>(rng() % 150);
      if (cache->Get(Key(q)) != nullptr) {
        ++hits;
      } else {
        cache->Put(Key(q), Answer(2500));
      }
    }
  }
  const double ideal = 1 - 150.0 / 3000;  // LRU's: one miss per question per phase
  INFO("hit ratio " << static_cast<double>(hits) / requests << ", ideal " << ideal);
  CHECK(static_cast<double>(hits) / requests >= ideal - 0.02);
}
