"""Bad input raises a clear exception naming the field; it never crashes the process."""

import math

import pytest

import sluice
from sluice import ConcurrencyLimiter, LeakyBucket, RateLimiter, TokenBudget, Window


def test_hierarchy():
    assert issubclass(sluice.RateLimited, sluice.Error)
    assert issubclass(sluice.CapacityError, sluice.Error)
    assert issubclass(sluice.LeaseExpired, sluice.Error)
    assert issubclass(sluice.InvalidArgument, sluice.Error)
    assert issubclass(sluice.InvalidArgument, ValueError)
    assert issubclass(sluice.LeaseExpired, sluice.FailedPrecondition)
    assert issubclass(sluice.FailedPrecondition, sluice.Error)
    assert issubclass(sluice.NotFound, sluice.Error)


@pytest.mark.parametrize(
    "windows, message",
    [
        ([], "windows must hold 1 to 8 windows, got 0"),
        ([Window.per_second(0)], "windows[0].limit must be > 0, got 0"),
        ([Window.per_second(5), Window(5, -1.0)], "windows[1].period must be > 0"),
        ([Window.per_second(5, burst=-2)], "windows[0].burst must be >= 0"),
        ([Window.per_second(1)] * 9, "got 9"),
    ],
)
def test_bad_windows_name_the_field(windows, message):
    with pytest.raises(sluice.InvalidArgument, match=r".*" + message.replace("[", r"\[").replace("]", r"\]")):
        RateLimiter(windows)
    with pytest.raises(ValueError):
        TokenBudget(windows)


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf, 1e300])
def test_non_finite_durations_are_invalid_arguments(bad):
    with pytest.raises(sluice.InvalidArgument, match="period must be a finite number of seconds"):
        Window(5, bad)
    with pytest.raises(sluice.InvalidArgument, match="max_wait"):
        LeakyBucket(5, max_wait=bad)
    with pytest.raises(sluice.InvalidArgument, match="lease"):
        ConcurrencyLimiter(5, lease=bad)
    with pytest.raises(sluice.InvalidArgument, match="seconds"):
        sluice.ManualClock().advance(bad)


@pytest.mark.parametrize("bad", [math.nan, math.inf, -1.0, 1e300])
def test_wait_timeouts_are_checked(bad):
    # NaN compares false with everything: a wait bounded by it used to poll forever.
    cap = ConcurrencyLimiter(1)
    held = cap.acquire("k")
    with pytest.raises(sluice.InvalidArgument, match="timeout must be a finite number"):
        cap.acquire("k", timeout=bad)
    with pytest.raises(sluice.InvalidArgument, match="timeout"):
        RateLimiter([Window.per_second(1)]).acquire("k", timeout=bad)
    with pytest.raises(TypeError):
        cap.acquire("k", timeout="1")
    held.release()


def test_bad_numbers_are_value_errors():
    with pytest.raises(sluice.InvalidArgument, match="rate must be > 0, got -1"):
        LeakyBucket(-1)
    with pytest.raises(sluice.InvalidArgument, match="max_in_flight must be >= 1, got 0"):
        ConcurrencyLimiter(0)
    with pytest.raises(sluice.InvalidArgument, match="max_keys must be >= 1"):
        RateLimiter([Window.per_second(1)], max_keys=0)
    rl = RateLimiter([Window.per_second(10, burst=5)])
    for cost in (0, -1, 6):
        with pytest.raises(sluice.InvalidArgument):
            rl.try_acquire("k", cost)
        with pytest.raises(ValueError):
            rl.try_acquire("k", cost)
    budget = TokenBudget([Window.per_minute(100)])
    with pytest.raises(sluice.InvalidArgument, match="estimate must be >= 0"):
        budget.try_reserve("k", -5)
    with pytest.raises(sluice.InvalidArgument, match="exceeds windows\\[0\\].burst 100"):
        budget.try_reserve("k", 101)


def test_wrong_types_are_type_errors():
    rl = RateLimiter([Window.per_second(10)])
    for key in (None, 5, 1.5, object()):
        with pytest.raises(TypeError):
            rl.try_acquire(key)
    with pytest.raises(TypeError):
        rl.try_acquire("k", "1")
    with pytest.raises(TypeError):
        rl.try_acquire("k", 2**70)  # does not fit int64
    with pytest.raises(TypeError):
        RateLimiter("not windows")
    with pytest.raises(TypeError):
        RateLimiter([Window.per_second(1)], clock="steady")


def test_keys_may_hold_any_bytes():
    rl = RateLimiter([Window.per_second(1)])
    assert rl.try_acquire("\u79df\u6237:\u5e94\u7528")  # Chinese tenant:app
    assert rl.try_acquire(b"\x00\xff\x00")
    assert rl.try_acquire("x" * 100_000)
