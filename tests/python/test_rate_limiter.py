import random

import pytest

import sluice
from sluice import ManualClock, RateLimiter, Window


def test_burst_then_one_per_interval():
    clock = ManualClock()
    rl = RateLimiter([Window.per_second(10, burst=5)], clock=clock)
    assert [rl.allow("k") for _ in range(6)] == [True] * 5 + [False]
    d = rl.try_acquire("k")
    assert not d and not d.allowed
    assert d.retry_after_nanos == 100_000_000
    assert d.retry_after == pytest.approx(0.1)
    assert d.limit == 10 and d.remaining == 0 and d.window == 1.0
    clock.advance(0.1)
    assert rl.try_acquire("k")


def test_several_windows_all_must_pass_and_refusals_charge_nothing():
    clock = ManualClock()
    rl = RateLimiter([Window.per_second(5), Window.per_minute(8)], clock=clock)
    assert sum(rl.allow("k") for _ in range(20)) == 5
    clock.advance(1.0)
    assert sum(rl.allow("k") for _ in range(20)) == 3  # the minute window had 3 left
    d = rl.try_acquire("k")
    assert d.window == 60.0
    assert d.retry_after == pytest.approx(6.5)


def test_cost_keys_and_peek():
    clock = ManualClock()
    rl = RateLimiter([Window.per_minute(10)], clock=clock)
    assert rl.try_acquire("a", cost=7).remaining == 3
    assert not rl.try_acquire("a", cost=4)
    assert rl.peek("a").remaining == 3
    assert rl.try_acquire(b"a", cost=3)  # bytes and str name the same key
    assert rl.peek("b").remaining == 10
    assert rl.try_acquire("")


def test_exactness_over_a_random_schedule():
    """The GCRA bound, checked by brute force over every interval of a random schedule."""
    rng = random.Random(5)
    limit, period_ms, burst = 7, 1000, 3
    clock = ManualClock()
    rl = RateLimiter([Window(limit, period_ms / 1000, burst)], clock=clock)
    admitted = []
    t_ns = 0
    for _ in range(400):
        t_ns += rng.choice([0, 1, rng.randrange(0, 300_000_000)])
        clock.set(0)
        clock.advance_nanos(t_ns)
        ok = rl.allow("k")

        def breaks(at, cost):
            total = cost
            if total > burst:
                return True
            for a in reversed(admitted):
                total += 1
                if total > burst + (at - a) * limit // (period_ms * 1_000_000):
                    return True
            return False

        assert ok == (not breaks(t_ns, 1)), f"t={t_ns}"
        if ok:
            admitted.append(t_ns)
    assert len(admitted) > 50


def test_acquire_raises_rate_limited_with_retry_after_and_headers():
    rl = RateLimiter([Window.per_minute(1)], clock=ManualClock())
    rl.acquire("k")
    with pytest.raises(sluice.RateLimited) as err:
        rl.acquire("k")
    assert isinstance(err.value, sluice.Error)
    assert err.value.retry_after == pytest.approx(60.0)
    headers = dict(err.value.headers(policy_name="tenant"))
    assert headers["Retry-After"] == "60"
    assert headers["RateLimit-Policy"] == '"tenant";q=1;w=60'
    assert headers["X-RateLimit-Remaining"] == "0"


def test_acquire_with_timeout_waits_for_the_next_unit():
    rl = RateLimiter([Window.per_second(200, burst=1)])  # the real steady clock
    rl.acquire("k")
    d = rl.acquire("k", timeout=1.0)  # waits ~5 ms instead of raising
    assert d.allowed


async def _acquire_twice(rl):
    await rl.acquire_async("k")
    return await rl.acquire_async("k", timeout=1.0)


def test_acquire_async_waits_with_asyncio():
    import asyncio

    rl = RateLimiter([Window.per_second(200, burst=1)])
    assert asyncio.run(_acquire_twice(rl)).allowed


def test_idle_keys_are_dropped():
    clock = ManualClock()
    rl = RateLimiter([Window.per_second(1)], clock=clock)
    for i in range(1000):
        rl.try_acquire(f"user-{i}")
    assert rl.key_count == 1000
    clock.advance(3)
    assert rl.drop_idle_keys() == 1000
    assert rl.key_count == 0


def test_max_keys_bound_raises_capacity_error_for_new_keys():
    rl = RateLimiter([Window.per_minute(5)], max_keys=3, clock=ManualClock())
    for k in "abc":
        assert rl.try_acquire(k)
    with pytest.raises(sluice.CapacityError):
        rl.try_acquire("d")
    assert not rl.allow("d")  # the fast path fails closed
    assert rl.try_acquire("a")


def test_properties():
    rl = RateLimiter([Window(3, 2.5, burst=1)], max_keys=7)
    (w,) = rl.windows
    assert (w.limit, w.period, w.burst) == (3, 2.5, 1)
    assert rl.max_keys == 7
    assert rl.memory_bytes > 0
    assert "Window(limit=3" in repr(w)
