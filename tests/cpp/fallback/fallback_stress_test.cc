// Many threads drive one FallbackPolicy (breakers, retry budget, a balanced target) with random
// outcomes while the clock moves. Run under ThreadSanitizer by the tsan preset.
#include <catch2/catch.hpp>

#include <atomic>
#include <random>
#include <thread>
#include <vector>

#include "sluice/fallback_policy.h"
#include "test_support.h"

using sluice::AttemptOutcome;
using sluice::Balancer;
using sluice::FallbackPolicy;
using sluice::ManualClock;
using sluice::TransportError;
using sluice_test::Value;
using Kind = FallbackPolicy::Step::Kind;

TEST_CASE("fallback stress: threads share breakers, budget and a balancer, and nothing leaks") {
  ManualClock clock;
  auto balancer = std::shared_ptr<Balancer>(Value(Balancer::Create({}, &clock)));
  for (const char* id : {"k1", "k2", "k3"}) REQUIRE(balancer->AddEndpoint({.id = id}).ok());
  FallbackPolicy::Options o;
  o.targets = {{.name = "primary"}, {.name = "pool", .balancer = balancer}, {.name = "last"}};
  o.max_retries_per_target = 2;
  o.breaker = {.consecutive_failures = 4, .minimum_calls = 20,
               .open_time = absl::Milliseconds(50), .half_open_probes = 2};
  std::atomic<int64_t> transitions{0};
  o.on_breaker_transition = [&](std::string_view, const auto&) { transitions.fetch_add(1); };
  auto policy = Value(FallbackPolicy::Create(std::move(o), &clock));

  constexpr int kThreads = 4, kCalls = 3000;
  std::atomic<int64_t> attempts{0};
  std::atomic<int64_t> too_long{0};  // calls with more attempts than the chain allows
  // (Catch2's assertions are not thread-safe: the threads count, the test thread asserts.)
  std::atomic<bool> stop{false};
  std::thread ticker([&] {
    while (!stop.load()) {
      clock.Advance(absl::Milliseconds(1));
      std::this_thread::yield();
    }
  });
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      std::mt19937_64 rng(static_cast<uint64_t>(t) + 1);
      for (int i = 0; i < kCalls; ++i) {
        FallbackPolicy::Call call = policy->Begin();
        int64_t mine = 0;
        while (call.step().kind == Kind::kAttempt) {
          ++mine;
          if (mine > 3 * 3) too_long.fetch_add(1);  // each target once plus two retries, at most
          const uint64_t roll = rng() % 10;
          if (roll == 0) break;  // dropped mid-attempt
          if (roll == 1) call.MarkFirstByte();
          AttemptOutcome outcome{.http_status = 200};
          if (roll >= 6) outcome = {.http_status = 500};
          if (roll == 5) outcome = {.transport = TransportError::kReset};
          if (roll == 4) outcome = {.http_status = 429, .retry_after = absl::Milliseconds(5)};
          call.Next(outcome);
        }
        attempts.fetch_add(mine);
      }
    });
  }
  for (auto& th : threads) th.join();
  stop = true;
  ticker.join();

  CHECK(too_long.load() == 0);
  int64_t counted = 0;
  for (const auto& t : policy->Targets()) counted += t.attempts;
  CHECK(counted == attempts.load());
  CHECK(transitions.load() > 0);
  for (const auto& e : balancer->Endpoints()) CHECK(e.in_flight == 0);
  // Every call has ended: nothing is held in the budget.
  CHECK(policy->calls_in_flight() == 0);
  CHECK(policy->retries_in_flight() == 0);
}
