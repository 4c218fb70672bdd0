"""The asyncio fast path (issue 19): an ``*_async`` call admitted at once decides in its own
coroutine frame and returns without a plan, a driver or anything scheduled on the loop; every
other case (refused, waiting, a Redis reply on its way, cancelled) behaves as before."""

import asyncio
import sys

import pytest

import sluice
from sluice import (ConcurrencyLimiter, LeakyBucket, ManualClock, RateLimited, RateLimiter,
                    ResponseCache, TokenBudget, Window)

YEAR = 366 * 86400.0  # no refill while a test runs
HUGE = 10**6


def _python_calls_to_finish(make_coroutine):
    """Runs the coroutine `make_coroutine()` returns by hand, with no event loop at all, and
    returns (its result, the names of the Python functions that ran). It must finish on its first
    step: one that suspended would have had to schedule something."""
    calls = []

    def profile(frame, event, arg):
        if event == "call":
            calls.append(frame.f_code.co_name)

    coroutine = make_coroutine()
    sys.setprofile(profile)
    try:
        coroutine.send(None)
    except StopIteration as finished:
        return finished.value, calls
    finally:
        sys.setprofile(None)
    coroutine.close()
    raise AssertionError("the admitted call suspended: it waited for something")


def _fast_path_cases():
    limiter = RateLimiter([Window(HUGE, YEAR)])
    bucket = LeakyBucket(HUGE, per=YEAR, burst=HUGE)
    cap = ConcurrencyLimiter(HUGE)
    budget = TokenBudget([Window(HUGE, YEAR)])
    cache = ResponseCache(max_bytes=1 << 20)
    key = sluice.cache_key(b'{"model":"m","messages":[{"role":"user","content":"hi"}]}')
    cache.put(key, b'{"choices":[]}')

    async def never_called():
        raise AssertionError("a hit must not call fn")

    permit = cap.try_acquire("held")
    reservation = budget.try_reserve("held", 10)
    return [
        ("_renew_async", lambda: permit.renew_async(), lambda result: result is None),
        ("_settle_async", lambda: reservation.settle_async(8), bool),
        ("acquire_async", lambda: limiter.acquire_async("k"), bool),
        ("acquire_async", lambda: limiter.acquire_async("k", 2, timeout=1.5), bool),
        ("try_acquire_async", lambda: limiter.try_acquire_async("k"), bool),
        ("acquire_async", lambda: bucket.acquire_async("k"), bool),
        ("try_acquire_async", lambda: bucket.try_acquire_async("k"), bool),
        ("acquire_async", lambda: cap.acquire_async("k", timeout=1.0), bool),
        ("try_acquire_async", lambda: cap.try_acquire_async("k"), bool),
        ("reserve_async", lambda: budget.reserve_async("k", 10), bool),
        ("get_or_fetch_async", lambda: cache.get_or_fetch_async(key, never_called),
         lambda answer: answer == b'{"choices":[]}'),
    ]


@pytest.mark.parametrize("case", range(11))
def test_admitted_at_once_runs_no_python_but_its_own_frame(case):
    # Before issue 19 each of these went through run_plan_async and a generator plan
    # (_rate_limiter_plan, _pending_plan, checked_timeout, ...): 3 to 6 Python frames.
    name, make, is_expected = _fast_path_cases()[case]
    result, calls = _python_calls_to_finish(make)
    assert is_expected(result)
    assert calls == [name]


def test_admitted_at_once_schedules_nothing_on_a_running_loop():
    counts = {}

    def counting(loop, method):
        real = getattr(loop, method)

        def counted(*args, **kwargs):
            counts[method] = counts.get(method, 0) + 1
            return real(*args, **kwargs)

        setattr(loop, method, counted)

    async def main():
        loop = asyncio.get_running_loop()
        for method in ("call_soon", "call_later", "call_at", "create_future", "create_task",
                       "add_reader"):
            counting(loop, method)
        results = []
        for _ in range(3):
            for _, make, is_expected in _fast_path_cases():  # fresh: a reservation settles once
                result = await make()
                assert is_expected(result)
                results.append(result)
        return results, dict(counts)  # before asyncio.run's own shutdown schedules its calls

    results, scheduled = asyncio.run(main())
    assert len(results) == 33
    assert scheduled == {}


# ---- the cases that are not admitted at once: the same results as before --------------------

def test_refused_without_timeout_raises_rate_limited_and_takes_nothing():
    clock = ManualClock()
    limiter = RateLimiter([Window.per_second(1)], clock=clock)
    budget = TokenBudget([Window.per_minute(100)], clock=clock)
    cap = ConcurrencyLimiter(1, clock=clock)
    bucket = LeakyBucket(1, per=1.0, burst=1, max_wait=0.0, clock=clock)

    async def main():
        assert (await limiter.acquire_async("k")).allowed
        with pytest.raises(RateLimited) as refused:
            await limiter.acquire_async("k")
        assert refused.value.decision.retry_after == pytest.approx(1.0)
        assert limiter.peek("k").remaining == 0
        assert await budget.reserve_async("k", 60)
        with pytest.raises(RateLimited) as over:
            await budget.reserve_async("k", 60)
        assert not over.value.decision.allowed
        assert budget.peek("k").remaining == 40  # a refusal reserves nothing
        held = await cap.acquire_async("k")
        with pytest.raises(RateLimited):
            await cap.acquire_async("k")
        assert cap.in_flight("k") == 1
        held.release()
        assert (await bucket.acquire_async("k")).allowed
        with pytest.raises(RateLimited):
            await bucket.acquire_async("k")

    asyncio.run(main())


def test_refused_with_a_timeout_waits_then_is_admitted_or_raises():
    limiter = RateLimiter([Window.per_second(200, burst=1)])  # the real clock: ~5 ms a unit
    cap = ConcurrencyLimiter(1)

    async def main():
        await limiter.acquire_async("k")
        waited = await limiter.acquire_async("k", timeout=1.0)
        assert waited.allowed
        with pytest.raises(RateLimited):  # the wait (~5 ms) does not fit in 1 ms
            await limiter.acquire_async("k", timeout=0.001)
        held = await cap.acquire_async("k")
        asyncio.get_running_loop().call_later(0.01, held.release)
        later = await cap.acquire_async("k", timeout=5.0)
        assert later and cap.in_flight("k") == 1
        later.release()
        with pytest.raises(sluice.InvalidArgument):  # validated before anything is taken
            await limiter.acquire_async("k", timeout=float("nan"))
        with pytest.raises(TypeError):
            await cap.acquire_async("k", timeout=True)

    asyncio.run(main())


def test_leaky_bucket_slot_due_later_is_awaited():
    bucket = LeakyBucket(200, per=1.0, burst=1)  # the real clock: one departure per 5 ms

    async def main():
        first = await bucket.acquire_async("p")
        second = await bucket.acquire_async("p")
        return first, second

    first, second = asyncio.run(main())
    assert first.delay == 0 and second.allowed and second.delay > 0


def test_cancelled_while_waiting_takes_nothing():
    limiter = RateLimiter([Window.per_second(1)])
    cap = ConcurrencyLimiter(1)

    async def main():
        await limiter.acquire_async("k")
        held = await cap.acquire_async("k")
        waiters = [asyncio.ensure_future(limiter.acquire_async("k", timeout=5.0)),
                   asyncio.ensure_future(cap.acquire_async("k", timeout=5.0))]
        await asyncio.sleep(0.01)
        for waiter in waiters:
            waiter.cancel()
        for waiter in waiters:
            with pytest.raises(asyncio.CancelledError):
                await waiter
        assert limiter.peek("k").remaining == 0 and cap.in_flight("k") == 1
        held.release()
        assert cap.in_flight("k") == 0
        # Cancelled before it first runs: the call never decides.
        never = asyncio.ensure_future(cap.acquire_async("k"))
        never.cancel()
        with pytest.raises(asyncio.CancelledError):
            await never
        assert cap.in_flight("k") == 0

    asyncio.run(main())


def test_cache_miss_still_fetches_once_and_a_cancelled_leader_passes_the_lead():
    cache = ResponseCache(max_bytes=1 << 20)
    key = sluice.cache_key(b'{"model":"m","messages":[{"role":"user","content":"miss"}]}')
    calls = []

    async def slow():
        calls.append("slow")
        await asyncio.sleep(10)

    async def quick():
        calls.append("quick")
        return b"answer"

    async def main():
        leader = asyncio.ensure_future(cache.get_or_fetch_async(key, slow))
        await asyncio.sleep(0.01)
        leader.cancel()
        with pytest.raises(asyncio.CancelledError):
            await leader
        answers = await asyncio.gather(*(cache.get_or_fetch_async(key, quick) for _ in range(3)))
        return answers, await cache.get_or_fetch_async(key, quick)

    answers, hit = asyncio.run(main())
    assert answers == [b"answer"] * 3 and hit == b"answer"
    assert calls == ["slow", "quick"]


# ---- cluster scope ----------------------------------------------------------------------------

def _store(port):
    return sluice.RedisStore(port=port, command_timeout=0.3)


def test_cluster_scope_awaits_the_reply_and_refuses_as_before(redis_server):
    store = _store(redis_server.port)
    limiter = RateLimiter([Window(2, YEAR)], redis=store, redis_name="fast-rl", local_share=1)
    budget = TokenBudget([Window(100, YEAR)], redis=store, redis_name="fast-tb", local_share=1)
    cap = ConcurrencyLimiter(1, redis=store, redis_name="fast-cl", local_share=1)
    bucket = LeakyBucket(2, per=YEAR, burst=2, max_wait=0.0, redis=store,
                         redis_name="fast-lb", local_share=1)

    async def main():
        decisions = await asyncio.gather(*(limiter.acquire_async("k") for _ in range(2)))
        assert all(d.allowed for d in decisions)
        with pytest.raises(RateLimited):
            await limiter.acquire_async("k", timeout=0.01)  # the wait is a year
        reservation = await budget.reserve_async("k", 60)
        assert reservation and (await reservation.settle_async(50)).remaining == 50
        with pytest.raises(RateLimited):
            await budget.reserve_async("k", 60)
        permit = await cap.acquire_async("k")
        with pytest.raises(RateLimited):
            await cap.acquire_async("k", timeout=0.005)
        permit.release()
        assert (await bucket.acquire_async("k")).allowed
        assert (await bucket.acquire_async("k")).allowed
        with pytest.raises(RateLimited):
            await bucket.acquire_async("k")

    asyncio.run(main())
    assert limiter.failure_mode_decisions == 0 and budget.failure_mode_decisions == 0


def test_leased_cluster_mode_decides_from_the_lease_without_a_plan(redis_server):
    limiter = RateLimiter([Window(1000, YEAR)], redis=_store(redis_server.port),
                          redis_name="fast-leased", local_share=1, mode="leased",
                          lease_units=50, on_failure="deny")

    async def first():
        return await limiter.acquire_async("k")  # takes a lease: a round trip

    assert asyncio.run(first()).allowed
    local_before = limiter.leased_local_decisions
    decision, calls = _python_calls_to_finish(lambda: limiter.acquire_async("k"))
    assert decision.allowed and calls == ["acquire_async"]
    assert limiter.leased_local_decisions == local_before + 1


def test_host_scope_admits_without_a_plan_too(region):
    limiter = RateLimiter([Window(HUGE, YEAR)], shared_region=region)
    budget = TokenBudget([Window(HUGE, YEAR)], shared_region=region + "-tb")
    try:
        decision, calls = _python_calls_to_finish(lambda: limiter.acquire_async("k"))
        assert decision.allowed and calls == ["acquire_async"]
        reservation, calls = _python_calls_to_finish(lambda: budget.reserve_async("k", 5))
        assert reservation and calls == ["reserve_async"]
        assert limiter.peek("k").remaining == HUGE - 1
    finally:
        del budget
        try:
            sluice.remove_shared_region(region + "-tb")
        except sluice.NotFound:
            pass
