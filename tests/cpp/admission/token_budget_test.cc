#include "sluice/token_budget.h"

#include <catch2/catch.hpp>

#include "test_support.h"

using sluice::Decision;
using sluice::ManualClock;
using sluice::TokenBudget;
using sluice::Window;
using sluice_test::ErrorOf;
using sluice_test::kSecond;
using sluice_test::Value;

namespace {
std::unique_ptr<TokenBudget> Make(std::vector<Window> windows, const sluice::Clock* clock) {
  TokenBudget::Options o;
  o.windows = std::move(windows);
  return Value(TokenBudget::Create(o, clock));
}
}  // namespace

TEST_CASE("reserve, then settle refunds what was not used") {
  ManualClock clock;
  auto budget = Make({Window::PerMinute(1000)}, &clock);
  TokenBudget::Reservation r = Value(budget->TryReserve("tenant", 600));
  REQUIRE(r);
  CHECK(r.decision().remaining == 400);
  Decision after = Value(r.Settle(250));
  CHECK(after.allowed);
  CHECK(after.remaining == 750);
  CHECK(budget->Peek("tenant").remaining == 750);
  CHECK_FALSE(r);  // settled
  CHECK(absl::IsFailedPrecondition(r.Settle(1).status()));
}

TEST_CASE("a request that would cross the budget is refused before it starts") {
  ManualClock clock;
  auto budget = Make({Window::PerMinute(1000)}, &clock);
  REQUIRE(Value(budget->TryReserve("t", 900)));
  TokenBudget::Reservation r = Value(budget->TryReserve("t", 200));
  CHECK_FALSE(r);
  CHECK_FALSE(r.decision().allowed);
  // 100 tokens are missing; at 1000/min they come back in 6 s.
  CHECK(r.decision().retry_after_nanos == 6 * kSecond);
  CHECK(budget->Peek("t").remaining == 100);  // the refusal took nothing
  CHECK(absl::IsFailedPrecondition(r.Settle(5).status()));
}

TEST_CASE("overuse is carried as debt and refuses until repaid") {
  ManualClock clock;
  auto budget = Make({Window::PerMinute(600)}, &clock);  // 10 tokens per second
  TokenBudget::Reservation r = Value(budget->TryReserve("t", 500));
  Decision after = Value(r.Settle(700));  // the model wrote more than estimated
  CHECK_FALSE(after.allowed);
  CHECK(after.remaining == -100);
  CHECK(after.retry_after_nanos == 10 * kSecond);  // 100 tokens of debt at 10/s
  CHECK_FALSE(Value(budget->TryReserve("t", 0)));  // even a zero estimate waits out the debt
  clock.AdvanceNanos(10 * kSecond);
  CHECK(Value(budget->TryReserve("t", 0)));
  CHECK_FALSE(Value(budget->TryReserve("t", 1)));
  clock.AdvanceNanos(kSecond / 10);
  CHECK(Value(budget->TryReserve("t", 1)));
}

TEST_CASE("cancel refunds everything, and an unsettled reservation stays charged") {
  ManualClock clock;
  auto budget = Make({Window::PerHour(100)}, &clock);
  {
    TokenBudget::Reservation r = Value(budget->TryReserve("t", 40));
    REQUIRE(r.Cancel().ok());
    CHECK(absl::IsFailedPrecondition(r.Cancel()));
  }
  CHECK(budget->Peek("t").remaining == 100);
  { TokenBudget::Reservation dropped = Value(budget->TryReserve("t", 40)); }
  CHECK(budget->Peek("t").remaining == 60);
}

TEST_CASE("refunds cannot fill a window past whole") {
  ManualClock clock;
  auto budget = Make({Window::PerMinute(100)}, &clock);
  TokenBudget::Reservation r = Value(budget->TryReserve("t", 80));
  clock.AdvanceNanos(60 * kSecond);  // refilled meanwhile
  CHECK(Value(r.Settle(0)).remaining == 100);
}

TEST_CASE("charge after the fact may go into debt") {
  ManualClock clock;
  auto budget = Make({Window::PerMinute(100)}, &clock);
  Decision d = Value(budget->Charge("t", 150));
  CHECK_FALSE(d.allowed);
  CHECK(d.remaining == -50);
  CHECK(Value(budget->Charge("t", 0)).remaining == -50);
  CHECK(absl::IsInvalidArgument(budget->Charge("t", -1).status()));
}

TEST_CASE("several token windows: each must fit, settle adjusts all") {
  ManualClock clock;
  auto budget = Make({Window::PerMinute(1000), Window::PerDay(1500)}, &clock);
  TokenBudget::Reservation a = Value(budget->TryReserve("t", 1000));
  REQUIRE(a.Settle(900).ok());
  clock.AdvanceNanos(60 * kSecond);  // the minute window is whole again, the day is not
  TokenBudget::Reservation b = Value(budget->TryReserve("t", 700));
  CHECK_FALSE(b);
  CHECK(b.decision().window_nanos == 24 * 3600 * kSecond);
  TokenBudget::Reservation c = Value(budget->TryReserve("t", 600));
  CHECK(c);
}

TEST_CASE("estimates are validated") {
  ManualClock clock;
  auto budget = Make({Window::PerMinute(100)}, &clock);
  CHECK(ErrorOf(budget->TryReserve("t", -1)).find("estimate must be >= 0") != std::string::npos);
  CHECK(ErrorOf(budget->TryReserve("t", 101)).find("exceeds windows[0].burst 100") !=
        std::string::npos);
  TokenBudget::Reservation r = Value(budget->TryReserve("t", 10));
  CHECK(absl::IsInvalidArgument(r.Settle(-5).status()));
  CHECK(r);  // a rejected settle leaves the reservation pending
  TokenBudget::Options o;
  CHECK(ErrorOf(TokenBudget::Create(o)).find("windows must hold 1 to 8") != std::string::npos);
}
