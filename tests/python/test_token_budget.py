import pytest

import sluice
from sluice import ManualClock, TokenBudget, Window


def test_reserve_settle_refund_and_debt():
    clock = ManualClock()
    budget = TokenBudget([Window.per_minute(600)], clock=clock)  # 10 tokens per second
    r = budget.reserve("tenant", 500)
    assert r and r.pending and r.estimate == 500
    assert r.decision.remaining == 100
    after = r.settle(700)
    assert not after.allowed and after.remaining == -100
    assert after.retry_after == pytest.approx(10.0)
    assert not r.pending
    with pytest.raises(sluice.FailedPrecondition):  # already settled
        r.settle(1)
    with pytest.raises(sluice.RateLimited) as err:
        budget.reserve("tenant", 0)
    assert err.value.retry_after == pytest.approx(10.0)
    clock.advance(10.0)
    assert budget.try_reserve("tenant", 0)


def test_refused_before_start_and_nothing_taken():
    budget = TokenBudget([Window.per_minute(1000)], clock=ManualClock())
    budget.reserve("t", 900)
    refused = budget.try_reserve("t", 200)
    assert not refused
    assert refused.decision.retry_after == pytest.approx(6.0)
    assert budget.peek("t").remaining == 100


def test_context_manager_cancels_on_exception_and_keeps_on_success():
    budget = TokenBudget([Window.per_hour(100)], clock=ManualClock())
    with pytest.raises(RuntimeError):
        with budget.reserve("t", 40):
            raise RuntimeError("provider down: nothing was consumed")
    assert budget.peek("t").remaining == 100
    with budget.reserve("t", 40) as r:
        r.settle(15)
    assert budget.peek("t").remaining == 85
    with budget.reserve("t", 40):
        pass  # unsettled: stays charged as estimated
    assert budget.peek("t").remaining == 45


def test_charge_after_the_fact():
    budget = TokenBudget([Window.per_minute(100), Window.per_day(1000)], clock=ManualClock())
    d = budget.charge("t", 150)
    assert not d.allowed and d.remaining == -50
    assert budget.peek("t").remaining == -50
    (minute, day) = budget.windows
    assert minute.limit == 100 and day.period == 86400.0
