#include "sluice/fallback_policy.h"

#include <catch2/catch.hpp>

#include <string>
#include <vector>

#include "test_support.h"

using sluice::AttemptOutcome;
using sluice::Balancer;
using sluice::CircuitBreaker;
using sluice::Failure;
using sluice::FallbackPolicy;
using sluice::ManualClock;
using sluice::TransportError;
using sluice_test::ErrorOf;
using sluice_test::Value;
using Kind = FallbackPolicy::Step::Kind;
using Action = FallbackPolicy::Action;

namespace {

FallbackPolicy::Options Chain(std::vector<std::string> names) {
  FallbackPolicy::Options o;
  for (auto& n : names) o.targets.push_back({.name = n, .model = n + "-model"});
  return o;
}

const AttemptOutcome kOk{.http_status = 200};
const AttemptOutcome k500{.http_status = 500};

// Runs one call with `respond` answering each attempt; returns the targets attempted, in order
// ("primary,primary,backup"), and the call's final status through `status`.
template <typename Respond>
std::string Walk(FallbackPolicy& policy, Respond respond, absl::Status* status = nullptr) {
  FallbackPolicy::Call call = policy.Begin();
  std::string path;
  while (call.step().kind == Kind::kAttempt) {
    const std::string target(call.step().target);
    path += (path.empty() ? "" : ",") + target;
    call.Next(respond(call.step()));
  }
  if (status != nullptr) *status = call.status();
  return path;
}

}  // namespace

TEST_CASE("fallback: a 5xx is retried once on the same target after a jittered backoff, then "
          "the next target") {
  ManualClock clock;
  auto policy = Value(FallbackPolicy::Create(Chain({"primary", "backup"}), &clock));
  FallbackPolicy::Call call = policy->Begin();
  REQUIRE(call.step().kind == Kind::kAttempt);
  CHECK(call.step().target == "primary");
  CHECK(call.step().model == "primary-model");
  CHECK(call.step().attempt == 1);
  CHECK(call.step().delay == absl::ZeroDuration());
  CHECK(call.step().failure == Failure::kNone);
  call.Next(k500);
  CHECK(call.step().target == "primary");
  CHECK(call.step().retry);
  CHECK(call.step().failure == Failure::kServer);
  CHECK(call.step().delay <= absl::Milliseconds(25));  // retry 0: [0, base]
  call.Next(k500);
  CHECK(call.step().target == "backup");
  CHECK_FALSE(call.step().retry);
  CHECK(call.step().delay == absl::ZeroDuration());  // falling back does not wait
  CHECK(call.step().attempt == 3);
  call.Next(kOk);
  CHECK(call.step().kind == Kind::kSucceeded);
  CHECK(call.status().ok());
  CHECK(call.Next(k500).kind == Kind::kSucceeded);  // finished: unchanged
  const auto targets = policy->Targets();
  CHECK(targets[0].attempts == 2);
  CHECK(targets[0].failures == 2);
  CHECK(targets[1].successes == 1);
}

TEST_CASE("fallback: the breaker stops calling a dead target and lets traffic back after it "
          "recovers (ManualClock)") {
  ManualClock clock;
  auto o = Chain({"primary", "backup"});
  o.max_retries_per_target = 0;
  o.breaker = {.consecutive_failures = 3, .open_time = absl::Seconds(5), .half_open_probes = 2};
  std::vector<std::string> events;
  o.on_breaker_transition = [&](std::string_view target, const CircuitBreaker::Transition& t) {
    events.push_back(std::string(target) + ":" + std::string(t.reason));
  };
  auto policy = Value(FallbackPolicy::Create(std::move(o), &clock));
  bool primary_up = false;
  auto respond = [&](const FallbackPolicy::Step& s) {
    return s.target == "primary" && !primary_up ? k500 : kOk;
  };
  for (int i = 0; i < 3; ++i) CHECK(Walk(*policy, respond) == "primary,backup");
  CHECK(events == std::vector<std::string>{"primary:consecutive failures"});
  for (int i = 0; i < 20; ++i) CHECK(Walk(*policy, respond) == "backup");  // no calls to primary
  CHECK(policy->Targets()[0].attempts == 3);
  CHECK(policy->Targets()[0].skipped == 20);
  primary_up = true;
  clock.Advance(absl::Seconds(5));
  CHECK(Walk(*policy, respond) == "primary");  // probe 1
  CHECK(Walk(*policy, respond) == "primary");  // probe 2 closes it
  CHECK(policy->Targets()[0].breaker.state == CircuitBreaker::State::kClosed);
  CHECK(Walk(*policy, respond) == "primary");
  CHECK(events == std::vector<std::string>{"primary:consecutive failures",
                                           "primary:open time elapsed",
                                           "primary:probes succeeded"});
}

TEST_CASE("fallback: the retry budget caps same-target retries across concurrent calls") {
  ManualClock clock;
  auto o = Chain({"only"});
  o.max_retries_per_target = 3;
  o.breaker.consecutive_failures = 0;
  o.breaker.failure_ratio = 0;
  o.retry_budget = {.ratio = 0.2, .min_retries = 3};
  auto policy = Value(FallbackPolicy::Create(std::move(o), &clock));
  std::vector<FallbackPolicy::Call> calls;
  for (int i = 0; i < 10; ++i) calls.push_back(policy->Begin());
  int retrying = 0, failed = 0;
  for (auto& c : calls) {
    c.Next(k500);
    if (c.step().kind == Kind::kAttempt) ++retrying;
    if (c.step().kind == Kind::kFailed) ++failed;
  }
  CHECK(retrying == 3);  // max(3, 20 % of 10)
  CHECK(failed == 7);
  CHECK(policy->retries_refused() == 7);
  for (auto& c : calls) {
    if (c.step().kind == Kind::kFailed) {
      CHECK(c.status().code() == absl::StatusCode::kUnavailable);
      CHECK_THAT(std::string(c.status().message()), Catch::Contains("retry budget exhausted"));
    }
  }
}

TEST_CASE("fallback: a 429 with Retry-After blocks its target for every call until then") {
  ManualClock clock;
  auto policy = Value(FallbackPolicy::Create(Chain({"primary", "backup"}), &clock));
  auto respond = [&](const FallbackPolicy::Step& s) {
    return s.target == "primary"
               ? AttemptOutcome{.http_status = 429, .retry_after = absl::Seconds(3)}
               : kOk;
  };
  CHECK(Walk(*policy, respond) == "primary,backup");
  CHECK(policy->Targets()[0].rate_limited_until_nanos == 3 * sluice_test::kSecond);
  CHECK(Walk(*policy, respond) == "backup");
  clock.Advance(absl::Seconds(3));
  CHECK(Walk(*policy, [](auto&) { return kOk; }) == "primary");
  // With nowhere else to go, the call fails saying when the target takes calls again.
  auto lone = Value(FallbackPolicy::Create(Chain({"only"}), &clock));
  FallbackPolicy::Call call = lone->Begin();
  call.Next({.http_status = 429, .retry_after = absl::Seconds(7)});
  CHECK(call.status().code() == absl::StatusCode::kUnavailable);
  CHECK(call.step().retry_after == absl::Seconds(7));
}

TEST_CASE("fallback: a lone rate-limited target is retried no sooner than its Retry-After") {
  ManualClock clock;
  auto o = Chain({"only"});
  o.actions.rate_limited = Action::kRetrySame;
  auto policy = Value(FallbackPolicy::Create(std::move(o), &clock));
  FallbackPolicy::Call call = policy->Begin();
  call.Next({.http_status = 429, .retry_after = absl::Seconds(2)});
  REQUIRE(call.step().kind == Kind::kAttempt);
  CHECK(call.step().delay == absl::Seconds(2));
  CHECK(call.step().failure == Failure::kRateLimited);
}

TEST_CASE("fallback: a request the provider refuses is not retried anywhere") {
  ManualClock clock;
  auto policy = Value(FallbackPolicy::Create(Chain({"primary", "backup"}), &clock));
  absl::Status status;
  CHECK(Walk(*policy, [](auto&) { return AttemptOutcome{.http_status = 400}; }, &status) ==
        "primary");
  CHECK(status.code() == absl::StatusCode::kFailedPrecondition);
  CHECK_THAT(std::string(status.message()), Catch::Contains("HTTP 400 (client)"));
  CHECK(policy->Targets()[0].breaker.calls == 0);  // the request's fault, not the target's
}

TEST_CASE("fallback: a context-length failure jumps to the larger-context target") {
  ManualClock clock;
  auto o = Chain({"primary", "backup", "long-context"});
  o.context_length_target = "long-context";
  auto policy = Value(FallbackPolicy::Create(std::move(o), &clock));
  const std::string body = R"({"error":{"code":"context_length_exceeded"}})";
  auto respond = [&](const FallbackPolicy::Step& s) {
    return s.target == "long-context" ? kOk : AttemptOutcome{.http_status = 400, .error_body = body};
  };
  CHECK(Walk(*policy, respond) == "primary,long-context");
}

TEST_CASE("fallback: streaming never moves after the first byte reached the client") {
  ManualClock clock;
  auto policy = Value(FallbackPolicy::Create(Chain({"primary", "backup"}), &clock));
  // Before the first byte: a broken stream falls back as usual.
  FallbackPolicy::Call before = policy->Begin();
  before.Next({.transport = TransportError::kReset});
  CHECK(before.step().kind == Kind::kAttempt);
  // After it: the call ends, reported as a broken stream.
  FallbackPolicy::Call after = policy->Begin();
  after.MarkFirstByte();
  after.Next({.http_status = 200, .transport = TransportError::kReset});
  CHECK(after.step().kind == Kind::kFailed);
  CHECK(after.status().code() == absl::StatusCode::kAborted);
  CHECK_THAT(std::string(after.status().message()), Catch::Contains("after its first byte"));
}

TEST_CASE("fallback: the deadline bounds every attempt and ends the call") {
  ManualClock clock;
  auto o = Chain({"primary", "backup"});
  o.deadline = absl::Seconds(10);
  o.attempt_timeout = absl::Seconds(4);
  auto policy = Value(FallbackPolicy::Create(std::move(o), &clock));
  FallbackPolicy::Call call = policy->Begin();
  CHECK(call.step().timeout == absl::Seconds(4));
  clock.Advance(absl::Seconds(4));
  call.Next({.transport = TransportError::kTimeout});  // timeouts move on
  CHECK(call.step().target == "backup");
  CHECK(call.step().timeout == absl::Seconds(4));
  clock.Advance(absl::Seconds(7));  // 11 s in
  call.Next({.transport = TransportError::kTimeout});
  CHECK(call.step().kind == Kind::kFailed);
  CHECK(call.status().code() == absl::StatusCode::kDeadlineExceeded);
  // A per-call deadline overrides the policy's.
  FallbackPolicy::Call short_call = policy->Begin({.deadline = absl::Seconds(1)});
  CHECK(short_call.step().timeout == absl::Seconds(1));
}

TEST_CASE("fallback: with every breaker open the call fails fast and says when to come back") {
  ManualClock clock;
  auto o = Chain({"a", "b"});
  o.breaker = {.consecutive_failures = 1, .open_time = absl::Seconds(5)};
  o.max_retries_per_target = 0;
  auto policy = Value(FallbackPolicy::Create(std::move(o), &clock));
  absl::Status status;
  CHECK(Walk(*policy, [](auto&) { return k500; }, &status) == "a,b");
  clock.Advance(absl::Seconds(1));
  FallbackPolicy::Call call = policy->Begin();
  CHECK(call.step().kind == Kind::kFailed);
  CHECK(call.status().code() == absl::StatusCode::kUnavailable);
  CHECK(call.step().retry_after == absl::Seconds(4));
  CHECK_THAT(std::string(call.status().message()), Catch::Contains("a: circuit open, half-opens in 4.000 s"));
}

TEST_CASE("fallback: a call dropped mid-attempt frees its half-open probe") {
  ManualClock clock;
  auto o = Chain({"primary", "backup"});
  o.breaker = {.consecutive_failures = 1, .open_time = absl::Seconds(1), .half_open_probes = 1};
  o.max_retries_per_target = 0;
  auto policy = Value(FallbackPolicy::Create(std::move(o), &clock));
  CHECK(Walk(*policy, [](const auto& s) { return s.target == "primary" ? k500 : kOk; }) ==
        "primary,backup");
  clock.Advance(absl::Seconds(1));
  {
    FallbackPolicy::Call dropped = policy->Begin();
    CHECK(dropped.step().target == "primary");  // the probe
  }
  CHECK(Walk(*policy, [](auto&) { return kOk; }) == "primary");  // the slot came back
}

TEST_CASE("fallback: a balanced target retries on another endpoint and reports to the pick") {
  ManualClock clock;
  auto balancer = Value(Balancer::Create({.strategy = Balancer::Strategy::kRoundRobin}, &clock));
  REQUIRE(balancer->AddEndpoint({.id = "key-1"}).ok());
  REQUIRE(balancer->AddEndpoint({.id = "key-2"}).ok());
  auto o = Chain({"pool"});
  o.targets[0].balancer = std::shared_ptr<Balancer>(std::move(balancer));
  o.targets[0].model.clear();
  auto policy = Value(FallbackPolicy::Create(std::move(o), &clock));
  FallbackPolicy::Call call = policy->Begin();
  REQUIRE(call.pick() != nullptr);
  CHECK(call.step().endpoint_id == "key-1");
  call.Next({.http_status = 401});  // auth: next target, but there is none; budget not needed
  CHECK(call.step().kind == Kind::kFailed);
  FallbackPolicy::Call second = policy->Begin();
  CHECK(second.step().endpoint_id == "key-2");  // key-1 cools down after the 401
  second.Next(k500);
  CHECK(second.step().kind == Kind::kAttempt);
  CHECK(second.step().retry);
  CHECK(second.step().endpoint_id == "key-2");  // the only one not cooling down
  second.Next(kOk);
  CHECK(second.status().ok());
}

TEST_CASE("fallback: options are checked, naming the field") {
  ManualClock clock;
  CHECK_THAT(ErrorOf(FallbackPolicy::Create({}, &clock)), Catch::Contains("targets must hold"));
  auto dup = Chain({"a", "a"});
  CHECK_THAT(ErrorOf(FallbackPolicy::Create(dup, &clock)),
             Catch::Contains("targets[1].name 'a' is used twice"));
  auto bad_breaker = Chain({"a"});
  bad_breaker.targets[0].breaker = CircuitBreaker::Options{.minimum_calls = 0};
  CHECK_THAT(ErrorOf(FallbackPolicy::Create(bad_breaker, &clock)),
             Catch::Contains("targets[0].breaker.minimum_calls"));
  auto bad_ctx = Chain({"a"});
  bad_ctx.context_length_target = "b";
  CHECK_THAT(ErrorOf(FallbackPolicy::Create(bad_ctx, &clock)),
             Catch::Contains("context_length_target 'b' names no target"));
  auto bad_budget = Chain({"a"});
  bad_budget.retry_budget.ratio = -1;
  CHECK_THAT(ErrorOf(FallbackPolicy::Create(bad_budget, &clock)),
             Catch::Contains("retry_budget.ratio"));
  auto bad_backoff = Chain({"a"});
  bad_backoff.backoff_max = absl::Milliseconds(1);
  CHECK_THAT(ErrorOf(FallbackPolicy::Create(bad_backoff, &clock)), Catch::Contains("backoff_max"));
}

namespace {

// A round-robin balancer over a, b, c, d whose endpoints in `bad` fail every request.
struct Fleet {
  ManualClock clock;
  std::unique_ptr<Balancer> balancer;
  std::string bad;
  explicit Fleet(std::string bad_ids, double max_ejection_percent) : bad(std::move(bad_ids)) {
    Balancer::Options o;
    o.strategy = Balancer::Strategy::kRoundRobin;
    o.outlier = {.consecutive_failures = 3,
                 .base_ejection_time = absl::Seconds(10),
                 .max_ejection_time = absl::Seconds(25),
                 .max_ejection_percent = max_ejection_percent};
    balancer = Value(Balancer::Create(o, &clock));
    for (const char* id : {"a", "b", "c", "d"}) REQUIRE(balancer->AddEndpoint({.id = id}).ok());
  }
  // The endpoints picked, in order.
  std::string Run(int picks) {
    std::string seen;
    for (int i = 0; i < picks; ++i) {
      Balancer::Pick p = Value(balancer->PickEndpoint(sluice::PickRequest{}));
      seen += p.endpoint_id();
      p.Complete({.http_status = bad.find(p.endpoint_id()) != std::string::npos ? 500 : 200});
    }
    return seen;
  }
  sluice::EndpointStats Stats(const std::string& id) {
    for (auto& s : balancer->Endpoints()) {
      if (s.id == id) return s;
    }
    FAIL("no endpoint " << id);
    return {};
  }
};

}  // namespace

TEST_CASE("outlier ejection: never more than the allowed share of endpoints at once") {
  Fleet fleet("ab", 25);  // 1 of 4 may be out
  fleet.Run(12);          // three rounds: a and b failed 3 times in a row each
  const std::string after = fleet.Run(12);
  const bool a_out = after.find('a') == std::string::npos;
  const bool b_out = after.find('b') == std::string::npos;
  CHECK(a_out != b_out);  // one is ejected, the other still takes its turns
}

TEST_CASE("outlier ejection: consecutive 5xx eject an endpoint for a time that grows") {
  Fleet fleet("a", 25);
  fleet.Run(12);
  fleet.Run(1);  // the pick after a's third failure ejects it
  CHECK(fleet.Stats("a").times_ejected == 1);
  CHECK(fleet.Stats("a").ejected_until_nanos == 10 * sluice_test::kSecond);
  CHECK(fleet.Run(12).find('a') == std::string::npos);
  fleet.clock.Advance(absl::Seconds(10));
  fleet.Run(12);
  fleet.Run(1);
  CHECK(fleet.Stats("a").times_ejected == 2);
  CHECK(fleet.Stats("a").ejected_until_nanos == 30 * sluice_test::kSecond);  // 10 + 2 x 10
  fleet.clock.Advance(absl::Seconds(20));
  fleet.Run(12);
  fleet.Run(1);
  CHECK(fleet.Stats("a").times_ejected == 3);
  CHECK(fleet.Stats("a").ejected_until_nanos == 55 * sluice_test::kSecond);  // capped at 25 s
}

TEST_CASE("outlier ejection: a healthy stretch after returning shortens the next ejection") {
  ManualClock clock;
  Balancer::Options o;
  o.outlier = {.consecutive_failures = 2, .base_ejection_time = absl::Seconds(10),
               .max_ejection_percent = 100};
  auto b = Value(Balancer::Create(o, &clock));
  REQUIRE(b->AddEndpoint({.id = "a"}).ok());
  auto complete = [&](int status) {
    Value(b->PickEndpoint(sluice::PickRequest{})).Complete({.http_status = status});
  };
  complete(500);
  complete(500);
  CHECK(b->PickEndpoint(sluice::PickRequest{}).status().code() == absl::StatusCode::kUnavailable);
  clock.Advance(absl::Seconds(20));  // back for 10 s already
  complete(200);
  CHECK(b->Endpoints()[0].times_ejected == 0);
  CHECK(Value(b->PickEndpoint(sluice::PickRequest{})).endpoint_id() == "a");
  CHECK_FALSE(Balancer::Create({.outlier = {.max_ejection_percent = 101}}, &clock).ok());
}
