"""Exact sliding windows from Python (Window.sliding): at most `limit` in any interval of
`period`, in process and host scope, and the refusals that name the field."""

import pytest

import sluice


def test_a_sliding_window_never_admits_more_than_its_limit_in_any_period():
    clock = sluice.ManualClock()
    logins = sluice.RateLimiter([sluice.Window.sliding(5, 600.0)], clock=clock)
    admitted_at = []
    for step in range(40):  # one attempt every 30 s for 20 minutes
        if logins.allow("alice"):
            admitted_at.append(step * 30.0)
        clock.advance(30.0)
    for start in admitted_at:
        assert sum(1 for t in admitted_at if start <= t < start + 600.0) <= 5
    # GCRA with the same numbers admits more in some 10 minutes (burst 5 + refill): the reason
    # sliding windows exist.
    clock2 = sluice.ManualClock()
    gcra = sluice.RateLimiter([sluice.Window(5, 600.0)], clock=clock2)
    gcra_at = []
    for step in range(40):
        if gcra.allow("alice"):
            gcra_at.append(step * 30.0)
        clock2.advance(30.0)
    assert max(sum(1 for t in gcra_at if s <= t < s + 600.0) for s in gcra_at) > 5


def test_a_sliding_decision_says_when_the_oldest_admission_leaves():
    clock = sluice.ManualClock()
    limiter = sluice.RateLimiter([sluice.Window.sliding(2, 60.0)], clock=clock)
    assert limiter.try_acquire("k")
    clock.advance(10.0)
    assert limiter.try_acquire("k")
    refused = limiter.try_acquire("k")
    assert not refused
    assert refused.retry_after == pytest.approx(50.0)
    window = sluice.Window.sliding(2, 60.0)
    assert window.kind == "sliding" and sluice.Window(2, 60.0).kind == "gcra"
    assert "sliding" in repr(window)


def test_sliding_windows_in_host_scope_share_one_log(region):
    clock = sluice.ManualClock()
    a = sluice.RateLimiter([sluice.Window.sliding(3, 60.0)], shared_region=region,
                           max_keys=100, clock=clock)
    b = sluice.RateLimiter([sluice.Window.sliding(3, 60.0)], shared_region=region,
                           max_keys=100, clock=clock)
    assert [a.allow("k"), b.allow("k"), a.allow("k"), b.allow("k")] == [True, True, True, False]


def test_bad_sliding_windows_name_the_field(region):
    with pytest.raises(sluice.InvalidArgument, match="limit"):
        sluice.RateLimiter([sluice.Window.sliding(sluice.SLIDING_MAX_LIMIT + 1, 60.0)])
    with pytest.raises(sluice.InvalidArgument, match="kind"):
        sluice.RateLimiter([sluice.Window.sliding(5, 60.0), sluice.Window(5, 60.0)])
    with pytest.raises(sluice.InvalidArgument, match="kind"):
        sluice.TokenBudget([sluice.Window.sliding(5, 60.0)])
    with pytest.raises(sluice.InvalidArgument, match="max_keys"):  # 7.8 GiB with the default
        sluice.RateLimiter([sluice.Window.sliding(1000, 60.0)], shared_region=region)
    for bad in (float("nan"), float("inf"), -1.0, 0.0):
        with pytest.raises((sluice.InvalidArgument, ValueError)):
            sluice.RateLimiter([sluice.Window.sliding(5, bad)])
    with pytest.raises(TypeError):
        sluice.Window.sliding(None, 60.0)
