"""Hostile asyncio and gevent use (issue 13): waits cancelled or killed half-way, coroutines never
awaited, greenlets switching inside argument conversion, leaders killed mid-fetch.

(Every ``*_async`` method also gets every hostile argument in test_hostile_api.py, and every
waiting method runs there under gevent too.) Each case checks that nothing leaked -- no permit
left held, no lead left dangling -- and that the object still answers afterwards.
"""

from __future__ import annotations

import asyncio
import gc
import warnings

import pytest

import hostile_support as hs
from hostile_support import DOC, RETURNS, CaseFailed

import sluice
from sluice import ConcurrencyLimiter, RateLimiter, TokenBudget, Window

SUITE = hs.Suite(__name__)
YEAR = 366 * 86400.0
REQUEST = b'{"model":"m","messages":[{"role":"user","content":"hello"}]}'


def scoped(scope: str, **options):
    if scope == "cluster":
        options.update(redis=sluice.RedisStore(port=hs.redis_port(), command_timeout=0.5),
                       redis_name=hs.rule_name(), local_share=1)
    return options


def add(case_id, fn, covers, expect=RETURNS, scope="process", gevent=False, idle=0.0):
    SUITE.add(case_id, fn, expect, covers=tuple(covers), redis=scope == "cluster", gevent=gevent,
              idle=idle)


# ---- asyncio ------------------------------------------------------------------------------------

def _acquire_async_cancelled(scope):
    def run():
        cl = ConcurrencyLimiter(1, **scoped(scope, max_keys=64))
        held = cl.try_acquire("k")

        async def main():
            try:
                await asyncio.wait_for(cl.acquire_async("k", timeout=30.0), 0.05)
            except asyncio.TimeoutError:
                pass
            task = asyncio.ensure_future(cl.acquire_async("k", timeout=30.0))
            await asyncio.sleep(0.02)
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                pass

        asyncio.run(main())
        gc.collect()
        if cl.in_flight("k") != 1:
            raise CaseFailed(f"cancelled waits left in_flight {cl.in_flight('k')}, not 1")
        held.release()
        if not cl.try_acquire("k"):
            raise CaseFailed("the slot did not come back after the cancelled waits")
    return run


def _rate_acquire_async_cancelled(scope):
    def run():
        rl = RateLimiter([Window(1, 0.2)], **scoped(scope, max_keys=64))
        rl.try_acquire("k")

        async def main():
            task = asyncio.ensure_future(rl.acquire_async("k", timeout=30.0))
            await asyncio.sleep(0.01)
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                pass
            await rl.try_acquire_async("k")

        asyncio.run(main())
    return run


def _reserve_async_cancelled(scope):
    def run():
        budget = TokenBudget([Window(1000, YEAR)], **scoped(scope, max_keys=64))

        async def main():
            task = asyncio.ensure_future(budget.reserve_async("k", 100))
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                pass
            r = await budget.reserve_async("k", 100)
            settle = asyncio.ensure_future(r.settle_async(10))
            settle.cancel()
            try:
                await settle
            except asyncio.CancelledError:
                pass
        asyncio.run(main())
        gc.collect()
        budget.peek("k")
    return run


for _scope in ("process", "cluster"):
    add(f"asyncio/{_scope}/ConcurrencyLimiter.acquire_async_cancelled", _acquire_async_cancelled(_scope),
        ("ConcurrencyLimiter.acquire_async",), scope=_scope)
    add(f"asyncio/{_scope}/RateLimiter.acquire_async_cancelled", _rate_acquire_async_cancelled(_scope),
        ("RateLimiter.acquire_async",), scope=_scope)
    add(f"asyncio/{_scope}/TokenBudget.reserve_async_cancelled", _reserve_async_cancelled(_scope),
        ("TokenBudget.reserve_async", "Reservation.settle_async"), scope=_scope)


def _never_awaited():
    cl = ConcurrencyLimiter(1)
    rl = RateLimiter([Window.per_second(5)])
    budget = TokenBudget([Window.per_minute(100)])
    cache = sluice.ResponseCache()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        coroutines = [cl.acquire_async("k"), cl.try_acquire_async("k"), rl.try_acquire_async("k"),
                      rl.acquire_async("k"), budget.reserve_async("k", 5),
                      cache.get_or_fetch_async(sluice.cache_key(REQUEST), None)]
        coroutines = None
        gc.collect()
    if not cl.try_acquire("k"):
        raise CaseFailed("a coroutine that never ran holds the slot")


add("asyncio/coroutines_never_awaited", _never_awaited,
    ("ConcurrencyLimiter.acquire_async", "RateLimiter.try_acquire_async", "TokenBudget.reserve_async",
     "ResponseCache.get_or_fetch_async"))


def _get_or_fetch_async_leader_cancelled():
    cache = sluice.ResponseCache()
    key = sluice.cache_key(REQUEST)

    async def slow():
        await asyncio.sleep(30)
        return b"never"

    async def fast():
        return b"second"

    async def main():
        leader = asyncio.ensure_future(cache.get_or_fetch_async(key, slow))
        await asyncio.sleep(0.01)
        follower = asyncio.ensure_future(cache.get_or_fetch_async(key, fast))
        await asyncio.sleep(0.01)
        leader.cancel()
        try:
            await leader
        except asyncio.CancelledError:
            pass
        return await asyncio.wait_for(follower, 10)

    answer = asyncio.run(main())
    if answer != b"second":
        raise CaseFailed(f"the follower got {answer!r}")


add("asyncio/get_or_fetch_async_leader_cancelled", _get_or_fetch_async_leader_cancelled,
    ("ResponseCache.get_or_fetch_async",))


def _stream_async_consumer_stops():
    cache = sluice.ResponseCache()
    policy = sluice.FallbackPolicy([{"name": "a"}])

    async def chunks(attempt=None):
        for i in range(100):
            yield b"data: %d\n\n" % i

    async def main():
        stream = cache.stream_or_fetch_async(sluice.cache_key(REQUEST), lambda: chunks())
        async for _ in stream:
            break
        await stream.aclose()
        fallback = policy.stream_async(chunks)
        async for _ in fallback:
            break
        await fallback.aclose()
        return await cache.get_or_fetch_async(sluice.cache_key(REQUEST), lambda: asyncio.sleep(0, b"x"))

    asyncio.run(main())
    if policy.calls_in_flight != 0:
        raise CaseFailed(f"a stopped stream left calls_in_flight {policy.calls_in_flight}")


add("asyncio/streams_stopped_by_consumer", _stream_async_consumer_stops,
    ("ResponseCache.stream_or_fetch_async", "FallbackPolicy.stream_async"))


# ---- gevent -------------------------------------------------------------------------------------

class SwitchingIndex:
    """An int whose conversion lets other greenlets run: pybind11 converts arguments inside a
    bound call, so the switch happens in the middle of it."""

    def __init__(self, value):
        self.value = value

    def __index__(self):
        import gevent

        gevent.sleep(0)
        return self.value


def _switch_inside_conversion(scope):
    def run():
        import gevent

        rl = RateLimiter([Window(10**9, YEAR)], **scoped(scope, max_keys=64))
        budget = TokenBudget([Window(10**9, YEAR)], **scoped(scope, max_keys=64))

        def hostile():
            for _ in range(50):
                for call in (lambda: rl.try_acquire("k", SwitchingIndex(1)),
                             lambda: rl.try_acquire("k", SwitchingIndex(1)),
                             lambda: budget.charge("k", SwitchingIndex(2)),
                             lambda: budget.try_reserve("k", SwitchingIndex(3))):
                    try:
                        call()
                    except TypeError:
                        pass

        def plain():
            for _ in range(200):
                rl.try_acquire("k")
                budget.charge("k", 1)
                gevent.sleep(0)

        gevent.joinall([gevent.spawn(hostile), gevent.spawn(plain), gevent.spawn(hostile)],
                       raise_error=True)
    return run


for _scope in ("process", "cluster"):
    add(f"gevent/{_scope}/greenlet_switch_inside_argument_conversion", _switch_inside_conversion(_scope),
        ("RateLimiter.try_acquire", "TokenBudget.charge"), DOC, scope=_scope, gevent=True)


def _acquire_killed(scope):
    def run():
        import gevent

        cl = ConcurrencyLimiter(1, **scoped(scope, max_keys=64))
        held = cl.try_acquire("k")
        waiters = [gevent.spawn(cl.acquire, "k", timeout=30.0) for _ in range(5)]
        gevent.sleep(0.05)
        gevent.killall(waiters)
        if cl.in_flight("k") != 1:
            raise CaseFailed(f"killed waiters left in_flight {cl.in_flight('k')}, not 1")
        held.release()
        with gevent.Timeout(10):
            cl.acquire("k", timeout=5.0).release()
    return run


def _cluster_decide_killed_while_paused():
    import gevent
    import os
    import sys

    sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(hs.HERE)), "benchmarks", "python"))
    from local_redis import LocalRedis

    with LocalRedis() as server:
        rl = RateLimiter([Window(10, YEAR)], redis=sluice.RedisStore(port=server.port, command_timeout=0.2),
                         redis_name=hs.rule_name(), on_failure="deny")
        rl.try_acquire("k")
        server.pause()
        try:
            deciders = [gevent.spawn(rl.try_acquire, "k") for _ in range(5)]
            gevent.sleep(0.01)
            gevent.killall(deciders)
        finally:
            server.resume()
        with gevent.Timeout(10):
            rl.try_acquire("k")
            rl.try_acquire("k")


def _leader_killed():
    import gevent

    cache = sluice.ResponseCache()
    key = sluice.cache_key(REQUEST)
    leader = gevent.spawn(cache.get_or_fetch, key, lambda: gevent.sleep(30) or b"never")
    gevent.sleep(0.01)
    follower = gevent.spawn(cache.get_or_fetch, key, lambda: b"second")
    gevent.sleep(0.01)
    leader.kill()
    answer = follower.get(timeout=10)
    if answer != b"second":
        raise CaseFailed(f"the follower got {answer!r}")
    streamer = gevent.spawn(lambda: list(cache.stream_or_fetch(
        sluice.cache_key(REQUEST, "s"), lambda: (gevent.sleep(30) for _ in range(1)))))
    gevent.sleep(0.01)
    streamer.kill()
    with gevent.Timeout(10):
        list(cache.stream_or_fetch(sluice.cache_key(REQUEST, "s"), lambda: [b"data: x\n\n"]))


def _policy_callbacks_switch():
    import gevent

    policy = sluice.FallbackPolicy([{"name": "a", "breaker": {"consecutive_failures": 1}}, {"name": "b"}],
                                   on_breaker_transition=lambda event: gevent.sleep(0),
                                   backoff_base=0.001, backoff_max=0.002)

    def flaky(attempt):
        gevent.sleep(0)
        if attempt.target == "a":
            raise ConnectionResetError("down")
        return "ok"

    jobs = [gevent.spawn(policy.call, flaky) for _ in range(20)]
    gevent.joinall(jobs, timeout=30, raise_error=True)


def _renew_killed(scope):
    def run():
        import gevent

        cl = ConcurrencyLimiter(2, **scoped(scope, max_keys=64))
        permit = cl.try_acquire("k")
        renewers = [gevent.spawn(permit.renew, 30.0) for _ in range(3)]
        gevent.sleep(0)
        gevent.killall(renewers)
        permit.renew(10.0)
        permit.release()
        if cl.in_flight("k") != 0:
            raise CaseFailed(f"in_flight {cl.in_flight('k')} after release")
    return run


for _scope in ("process", "cluster"):
    add(f"gevent/{_scope}/acquire_waiters_killed", _acquire_killed(_scope),
        ("ConcurrencyLimiter.acquire",), scope=_scope, gevent=True)
    add(f"gevent/{_scope}/renew_killed", _renew_killed(_scope), ("Permit.renew",), scope=_scope, gevent=True)
add("gevent/cluster/decide_killed_while_redis_stalls", _cluster_decide_killed_while_paused,
    ("RateLimiter.try_acquire",), DOC, scope="cluster", gevent=True, idle=15.0)
add("gevent/process/cache_leader_killed", _leader_killed,
    ("ResponseCache.get_or_fetch", "ResponseCache.stream_or_fetch"), gevent=True)
add("gevent/process/breaker_callback_switches", _policy_callbacks_switch,
    ("FallbackPolicy.call",), DOC, gevent=True)

hostile_session = hs.session_fixture()


@pytest.mark.parametrize("case_id", SUITE.ids())
def test_async_gevent(case_id, hostile_session, request):
    hs.check(__name__, case_id, request)
