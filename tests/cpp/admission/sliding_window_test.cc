// Sliding windows (WindowKind::kSliding): what they promise beside GCRA, the numbers of a
// Decision, every argument Create and TryAcquire must refuse, in every scope, and Redis going
// wrong (a stalled server, a key of the wrong type).
#include <chrono>
#include <filesystem>
#include <fstream>
#include <cstdint>
#include <functional>
#include <limits>
#include <thread>
#include <memory>
#include <string>

#include <catch2/catch.hpp>

#include "cluster_test_support.h"
#include "local_redis.h"
#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/str_split.h"
#include "sluice/sluice.hpp"
#include "stores/redis_keys.h"
#include "test_support.h"

using sluice::ManualClock;
using sluice::RateLimiter;
using sluice::TokenBudget;
using sluice::Window;
using sluice::WindowKind;
using sluice_test::ErrorOf;
using sluice_test::RegionName;
using sluice_test::Value;

namespace {

std::unique_ptr<RateLimiter> Limiter(std::vector<Window> windows, const sluice::Clock* clock,
                                     const std::string& region = "", int64_t max_keys = 1 << 20) {
  RateLimiter::Options o;
  o.windows = std::move(windows);
  o.shared_region = region;
  o.max_keys = max_keys;
  return Value(RateLimiter::Create(o, clock));
}

absl::Status CreateError(std::vector<Window> windows) {
  RateLimiter::Options o;
  o.windows = std::move(windows);
  return RateLimiter::Create(o).status();
}

}  // namespace

TEST_CASE("5 per 10 minutes: GCRA admits more in some 10 minutes, a sliding window never over 5") {
  ManualClock clock;
  auto gcra = Limiter({Window{5, absl::Minutes(10), 0}}, &clock);
  auto sliding = Limiter({Window::Sliding(5, absl::Minutes(10))}, &clock);
  int gcra_in_ten = 0, sliding_in_ten = 0;
  for (int minute = 0; minute < 10; ++minute) {  // one attempt a minute plus a burst at 0
    for (int i = 0; i < (minute == 0 ? 5 : 1); ++i) {
      gcra_in_ten += gcra->Allow("login:alice") ? 1 : 0;
      sliding_in_ten += sliding->Allow("login:alice") ? 1 : 0;
    }
    clock.Advance(absl::Minutes(1));
  }
  REQUIRE(gcra_in_ten > 5);  // minute 0..9: 5 at once, then a unit refills every 2 minutes
  REQUIRE(sliding_in_ten == 5);
}

TEST_CASE("a sliding window's Decision: remaining, retry_after and reset_after are exact") {
  for (bool host : {false, true}) {
    RegionName region;
    ManualClock clock;
    auto limiter = Limiter({Window::Sliding(3, absl::Seconds(10))}, &clock,
                           host ? region.name : "", 64);
    sluice::Decision d = Value(limiter->TryAcquire("k"));  // t = 0
    REQUIRE(d.allowed);
    REQUIRE(d.limit == 3);
    REQUIRE(d.remaining == 2);
    REQUIRE(d.window_nanos == 10 * sluice_test::kSecond);
    REQUIRE(d.reset_after_nanos == 10 * sluice_test::kSecond);
    clock.Advance(absl::Seconds(4));
    d = Value(limiter->TryAcquire("k", 2));  // t = 4 s: full
    REQUIRE(d.allowed);
    REQUIRE(d.remaining == 0);
    clock.Advance(absl::Seconds(1));
    d = Value(limiter->TryAcquire("k"));  // t = 5 s: the one at 0 leaves at 10 s
    REQUIRE_FALSE(d.allowed);
    REQUIRE(d.remaining == 0);
    REQUIRE(d.retry_after_nanos == 5 * sluice_test::kSecond);
    REQUIRE(d.reset_after_nanos == 9 * sluice_test::kSecond);  // the ones at 4 s leave at 14 s
    d = Value(limiter->TryAcquire("k", 2));  // 2 need the ones at 4 s gone too
    REQUIRE(d.retry_after_nanos == 9 * sluice_test::kSecond);
    const sluice::Decision peek = limiter->Peek("k");
    REQUIRE_FALSE(peek.allowed);
    REQUIRE(peek.retry_after_nanos == 5 * sluice_test::kSecond);
    clock.AdvanceNanos(5 * sluice_test::kSecond - 1);
    REQUIRE_FALSE(limiter->Allow("k"));  // 1 ns early
    clock.AdvanceNanos(1);
    REQUIRE(limiter->Allow("k"));  // exactly at retry_after
    const sluice::Decision fresh = limiter->Peek("never-seen");
    REQUIRE(fresh.allowed);
    REQUIRE(fresh.remaining == 3);
  }
}

TEST_CASE("sliding windows: Create refuses bad windows, naming the field") {
  using Catch::Matchers::Contains;
  auto message = [](std::vector<Window> w) {
    return std::string(CreateError(std::move(w)).message());
  };
  auto sliding = [](int64_t limit, absl::Duration period, int64_t burst = 0) {
    return Window{limit, period, burst, WindowKind::kSliding};
  };
  for (int64_t limit : {int64_t{0}, int64_t{-1}, std::numeric_limits<int64_t>::min()}) {
    REQUIRE_THAT(message({sliding(limit, absl::Seconds(1))}), Contains("windows[0].limit"));
  }
  REQUIRE_THAT(message({sliding(sluice::kMaxSlidingLimit + 1, absl::Hours(1))}),
               Contains("windows[0].limit must be 1 to 1000"));
  REQUIRE_THAT(message({sliding(std::numeric_limits<int64_t>::max(), absl::Hours(1))}),
               Contains("windows[0].limit"));
  for (absl::Duration period : {absl::ZeroDuration(), absl::Seconds(-1), absl::Hours(24 * 367),
                                absl::InfiniteDuration(), -absl::InfiniteDuration()}) {
    REQUIRE_THAT(message({sliding(5, period)}), Contains("windows[0].period"));
  }
  REQUIRE_THAT(message({sliding(5, absl::Seconds(1), 3)}), Contains("windows[0].burst"));
  REQUIRE_THAT(message({sliding(5, absl::Seconds(1), -1)}), Contains("windows[0].burst"));
  REQUIRE(CreateError({sliding(5, absl::Seconds(1), 5)}).ok());  // burst == limit is the same
  // One limiter, one kind.
  REQUIRE_THAT(message({Window::PerSecond(5), Window::Sliding(5, absl::Minutes(1))}),
               Contains("windows[1].kind"));
  REQUIRE_THAT(message({Window::Sliding(5, absl::Minutes(1)), Window::PerSecond(5)}),
               Contains("windows[1].kind"));
  REQUIRE_THAT(message({Window{5, absl::Seconds(1), 0, static_cast<WindowKind>(7)}}),
               Contains("windows[0].kind"));
  // Several sliding windows are fine.
  REQUIRE(CreateError({Window::Sliding(5, absl::Minutes(1)), Window::Sliding(20, absl::Hours(1))})
              .ok());
  REQUIRE(CreateError({Window::Sliding(sluice::kMaxSlidingLimit, absl::Hours(1))}).ok());
}

TEST_CASE("sliding windows: TokenBudget refuses them (token windows are too large for a log)") {
  TokenBudget::Options o;
  o.windows = {Window::Sliding(100, absl::Minutes(1))};
  auto budget = TokenBudget::Create(o);
  REQUIRE(budget.status().code() == absl::StatusCode::kInvalidArgument);
  REQUIRE_THAT(ErrorOf(budget), Catch::Matchers::Contains("windows[0].kind"));
}

TEST_CASE("sliding windows: costs beyond the limit, or below 1, are InvalidArgument") {
  ManualClock clock;
  auto limiter = Limiter(
      {Window::Sliding(4, absl::Seconds(1)), Window::Sliding(10, absl::Hours(1))}, &clock);
  for (int64_t cost : {int64_t{0}, int64_t{-1}, int64_t{5}, std::numeric_limits<int64_t>::max(),
                       std::numeric_limits<int64_t>::min()}) {
    auto d = limiter->TryAcquire("k", cost);
    REQUIRE(d.status().code() == absl::StatusCode::kInvalidArgument);
    REQUIRE_FALSE(limiter->Allow("k", cost));
    REQUIRE(limiter->Start("k", cost).status().code() == absl::StatusCode::kInvalidArgument);
  }
  REQUIRE(Value(limiter->TryAcquire("k", 4)).allowed);
}

TEST_CASE("sliding windows: any time at all is safe (saturating, never wrapping)") {
  ManualClock clock;
  auto limiter = Limiter({Window::Sliding(2, absl::Hours(24 * 366))}, &clock);
  for (int64_t t : {std::numeric_limits<int64_t>::min(), int64_t{-1}, int64_t{0},
                    std::numeric_limits<int64_t>::max(), std::numeric_limits<int64_t>::min()}) {
    auto d = limiter->TryAcquireAt("k", 1, t);
    REQUIRE(d.ok());
    REQUIRE(d->retry_after_nanos >= 0);
    REQUIRE(d->reset_after_nanos >= 0);
  }
  // The key's time is now its latest (the saturated end of the range), which holds two.
  REQUIRE_FALSE(Value(limiter->TryAcquireAt("k", 1, 0)).allowed);
}

TEST_CASE("sliding windows: max_keys is honoured, idle keys are dropped to make room") {
  ManualClock clock;
  auto limiter = Limiter({Window::Sliding(2, absl::Seconds(10))}, &clock, "", /*max_keys=*/2);
  REQUIRE(limiter->Allow("a"));
  REQUIRE(limiter->Allow("b"));
  auto full = limiter->TryAcquire("c");
  REQUIRE(full.status().code() == absl::StatusCode::kResourceExhausted);
  REQUIRE(limiter->Allow("a"));  // known keys keep working
  REQUIRE(limiter->key_count() == 2);
  REQUIRE(limiter->memory_bytes() > 0);
  // Idle once a period (and the margin for racing clock readings) has passed.
  clock.Advance(absl::Seconds(11) + absl::Milliseconds(2));
  REQUIRE(limiter->Allow("c"));
  REQUIRE(limiter->key_count() <= 2);
  REQUIRE(limiter->Allow("d"));
  REQUIRE(limiter->DropIdleKeys() == 0);  // c and d are live
  clock.Advance(absl::Seconds(12));
  REQUIRE(limiter->DropIdleKeys() == 2);
  REQUIRE(limiter->key_count() == 0);
}

TEST_CASE("sliding windows in a host region: sizes, and a region of the other kind is refused") {
  RegionName region;
  const std::vector<Window> windows = {Window::Sliding(5, absl::Minutes(10))};
  // Per key: a lock word, a head and 5 times, with the 2-word digest: 10 words.
  REQUIRE(Value(sluice::SharedRegionBytesForSlidingWindows(windows, 1000)) ==
          4096 + 2048 * 10 * 8);
  REQUIRE(sluice::SharedRegionBytesForSlidingWindows({Window::PerMinute(5)}, 10).status().code() ==
          absl::StatusCode::kInvalidArgument);
  REQUIRE(sluice::SharedRegionBytesForSlidingWindows(windows, 0).status().code() ==
          absl::StatusCode::kInvalidArgument);
  REQUIRE(sluice::SharedRegionBytesForSlidingWindows({}, 10).status().code() ==
          absl::StatusCode::kInvalidArgument);
  REQUIRE(sluice::SharedRegionBytesForSlidingWindows(
              {Window::Sliding(sluice::kMaxSlidingLimit + 1, absl::Minutes(1))}, 10)
              .status()
              .code() == absl::StatusCode::kInvalidArgument);
  ManualClock clock;
  auto sliding = Limiter(windows, &clock, region.name, 1000);
  REQUIRE(sliding->Allow("k"));
  RateLimiter::Options gcra;
  gcra.windows = {Window{5, absl::Minutes(10), 0}};
  gcra.shared_region = region.name;
  gcra.max_keys = 1000;
  REQUIRE(RateLimiter::Create(gcra).status().code() == absl::StatusCode::kFailedPrecondition);
  // The same sliding configuration shares the region's state.
  auto again = Limiter(windows, &clock, region.name, 1000);
  REQUIRE(again->Peek("k").remaining == 4);
}

TEST_CASE("sliding windows in cluster scope: leased mode and sub-microsecond periods are refused") {
  LocalRedis redis;
  RateLimiter::Options o;
  o.windows = {Window::Sliding(5, absl::Minutes(10))};
  o.cluster.store = sluice_test::Store(redis.port());
  o.cluster.on_failure = sluice::FailureMode::kDeny;
  o.cluster.redis_name = "logins";
  o.cluster.mode = sluice::ClusterMode::kLeased;
  REQUIRE_THAT(std::string(RateLimiter::Create(o).status().message()),
               Catch::Matchers::Contains("cluster.mode"));
  o.cluster.mode = sluice::ClusterMode::kStrict;
  o.windows = {Window::Sliding(5, absl::Nanoseconds(1500))};
  REQUIRE_THAT(std::string(RateLimiter::Create(o).status().message()),
               Catch::Matchers::Contains("windows[0].period"));
  o.windows = {Window::Sliding(5, absl::Minutes(10))};
  o.shared_region = "both-scopes";
  REQUIRE_THAT(std::string(RateLimiter::Create(o).status().message()),
               Catch::Matchers::Contains("shared_region and cluster.store"));
  o.shared_region.clear();
  o.cluster.on_failure = sluice::FailureMode::kLocal;  // without local_share
  REQUIRE_THAT(std::string(RateLimiter::Create(o).status().message()),
               Catch::Matchers::Contains("cluster.local_share"));
}

namespace {

// Polls `ready` every 5 ms for up to 10 s: for what only a real server's recovery can bring.
bool Eventually(const std::function<bool()>& ready) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (std::chrono::steady_clock::now() < deadline) {
    if (ready()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return ready();
}

std::unique_ptr<RateLimiter> RedisLimiter(std::shared_ptr<sluice::RedisStore> store,
                                          const std::string& name, sluice::FailureMode mode,
                                          const sluice::Clock* clock) {
  RateLimiter::Options o;
  o.windows = {Window::Sliding(4, absl::Hours(1))};
  o.cluster.store = std::move(store);
  o.cluster.redis_name = name;
  o.cluster.on_failure = mode;
  o.cluster.local_share = 2;
  return Value(RateLimiter::Create(o, clock));
}

}  // namespace

TEST_CASE("sliding windows in Redis: a SIGSTOPped server gets the failure mode, then Redis again") {
  LocalRedis redis;
  ManualClock clock;
  auto store = sluice_test::Store(redis.port());
  auto deny = RedisLimiter(store, "deny", sluice::FailureMode::kDeny, &clock);
  auto allow = RedisLimiter(store, "allow", sluice::FailureMode::kAllow, &clock);
  auto local = RedisLimiter(store, "local", sluice::FailureMode::kLocal, &clock);
  for (RateLimiter* l : {deny.get(), allow.get(), local.get()}) {
    const sluice::Decision d = Value(l->TryAcquire("k"));
    REQUIRE(d.allowed);
    REQUIRE(d.remaining == 3);  // Redis decided
    REQUIRE(l->failure_mode_decisions() == 0);
  }
  redis.Pause();
  sluice::Decision d = Value(deny->TryAcquire("k"));
  REQUIRE_FALSE(d.allowed);
  REQUIRE(d.retry_after() == absl::Milliseconds(50));  // the store's reconnect interval
  REQUIRE(deny->failure_mode_decisions() >= 1);
  REQUIRE_FALSE(deny->Peek("k").allowed);
  REQUIRE(Value(allow->TryAcquire("k", 4)).allowed);
  // kLocal: this process's share, 4 / 2, from a local sliding log.
  REQUIRE(Value(local->TryAcquire("k")).allowed);
  auto pending = Value(local->Start("k"));
  REQUIRE(pending.Get().allowed);
  REQUIRE_FALSE(Value(local->TryAcquire("k")).allowed);
  redis.Resume();
  // Back on Redis: the key holds the admission made before the stall and the one that brought
  // Redis back, plus, perhaps, the one sent into the stalled socket (Redis runs it when it
  // resumes, though its caller was refused: charged and unused, never an over-admission).
  REQUIRE(Eventually([&] {
    const int64_t before = deny->failure_mode_decisions();
    auto again = deny->TryAcquire("k");
    return again.ok() && again->allowed && deny->failure_mode_decisions() == before;
  }));
  const int64_t remaining = deny->Peek("k").remaining;
  REQUIRE(remaining >= 1);
  REQUIRE(remaining <= 2);
}

TEST_CASE("sliding windows in Redis: a key of the wrong type is an error, whatever the mode") {
  LocalRedis redis;
  ManualClock clock;
  auto store = sluice_test::Store(redis.port());
  auto allow = RedisLimiter(store, "typed", sluice::FailureMode::kAllow, &clock);
  // Something else wrote a string where window 0's sorted set lives.
  const std::string key = sluice::internal::KeyTag(*store, "typed",
                                                   sluice::internal::DigestKey("k")) + ":z0";
  redisContext* c = redisConnect("127.0.0.1", redis.port());
  REQUIRE((c != nullptr && !c->err));
  freeReplyObject(redisCommand(c, "SET %s %s", key.c_str(), "not-a-set"));
  redisFree(c);
  auto d = allow->TryAcquire("k");
  REQUIRE(d.status().code() == absl::StatusCode::kFailedPrecondition);
  REQUIRE_FALSE(allow->Allow("k"));
  auto pending = Value(allow->Start("k"));
  REQUIRE_FALSE(pending.Get().allowed);
  REQUIRE(pending.status().code() == absl::StatusCode::kFailedPrecondition);
  REQUIRE(allow->failure_mode_decisions() == 0);
  REQUIRE(Value(allow->TryAcquire("other")).allowed);  // other keys are fine
}

TEST_CASE("docs/deployment.md's table of sliding region sizes agrees with the function") {
  std::ifstream doc(std::string(SLUICE_SOURCE_DIR) + "/docs/deployment.md");
  REQUIRE(doc.is_open());
  auto number = [](std::string cell, int64_t* out) {
    cell = absl::StrReplaceAll(absl::StripAsciiWhitespace(cell), {{",", ""}});
    return absl::SimpleAtoi(cell, out);
  };
  int rows = 0;
  bool in_table = false;
  for (std::string line; std::getline(doc, line);) {
    if (line.find("<!-- sliding region sizes -->") != std::string::npos) in_table = true;
    if (line.find("<!-- /sliding region sizes -->") != std::string::npos) in_table = false;
    if (!in_table || line.rfind("| ", 0) != 0 || line.find("---") != std::string::npos) continue;
    // | what | limits | max_keys | bytes | about |
    std::vector<std::string> cells = absl::StrSplit(line, '|');
    REQUIRE(cells.size() >= 5);
    int64_t max_keys = 0, bytes = 0;
    if (!number(cells[3], &max_keys)) continue;  // the heading
    INFO(line);
    REQUIRE(number(cells[4], &bytes));
    std::vector<Window> windows;
    for (absl::string_view limit : absl::StrSplit(cells[2], ',')) {
      int64_t l = 0;
      REQUIRE(number(std::string(limit), &l));
      windows.push_back(Window::Sliding(l, absl::Hours(1)));
    }
    CHECK(bytes == Value(sluice::SharedRegionBytesForSlidingWindows(windows, max_keys)));
    ++rows;
  }
  CHECK(rows >= 5);
}

TEST_CASE("sliding windows in a host region: a region beyond kMaxSlidingRegionBytes is refused") {
  // The default max_keys (2^20) with limit 1000 would reserve 7.8 GiB of /dev/shm at creation.
  RegionName region;
  RateLimiter::Options o;
  o.windows = {Window::Sliding(1000, absl::Minutes(1))};
  o.shared_region = region.name;
  const absl::Status refused = RateLimiter::Create(o).status();
  REQUIRE(refused.code() == absl::StatusCode::kInvalidArgument);
  CHECK_THAT(std::string(refused.message()), Catch::Contains("max_keys must be lower"));
  CHECK_FALSE(std::filesystem::exists("/dev/shm/" + region.name));  // nothing left behind
  // The same windows with the keys one expects fit.
  o.max_keys = 10'000;
  REQUIRE(Value(sluice::SharedRegionBytesForSlidingWindows(o.windows, o.max_keys)) <=
          sluice::kMaxSlidingRegionBytes);
  ManualClock clock;
  REQUIRE(Value(RateLimiter::Create(o, &clock))->Allow("k"));
}
