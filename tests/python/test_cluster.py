"""Cluster scope (strict) from Python, against a redis-server the test starts on a free port."""

import asyncio
import multiprocessing
import os

import pytest

from loop_gaps import run_greenlets_beside_ticker

import sluice
from sluice import RateLimiter, Window

YEAR = 366 * 86400.0  # no refill while a test runs


def _store(port, **options):
    options.setdefault("command_timeout", 0.3)
    return sluice.RedisStore(port=port, **options)


def _hammer(port, rule, attempts, results):
    limiter = RateLimiter([Window(500, YEAR)], redis=_store(port), redis_name=rule, local_share=1)
    results.put(sum(limiter.allow("tenant-1") for _ in range(attempts)))


def test_strict_mode_is_exact_across_processes(redis_server):
    ctx = multiprocessing.get_context("spawn")
    results = ctx.Queue()
    workers = [ctx.Process(target=_hammer, args=(redis_server.port, "exact", 300, results))
               for _ in range(3)]
    for w in workers:
        w.start()
    admitted = sum(results.get(timeout=60) for _ in workers)
    for w in workers:
        w.join(timeout=60)
    assert admitted == 500  # 900 attempts from 3 processes: exactly the limit
    store = _store(redis_server.port)
    limiter = RateLimiter([Window(500, YEAR)], redis=store, redis_name="exact", local_share=1)
    decision = limiter.try_acquire("tenant-1")
    assert not decision.allowed and decision.remaining == 0
    assert store.stats()["commands"] == 1  # one round trip for one decision


def test_failure_modes_after_redis_dies(redis_server):
    store = _store(redis_server.port, reconnect_interval=30.0)
    deny = RateLimiter([Window(10, YEAR)], redis=store, redis_name="deny", on_failure="deny")
    local = RateLimiter([Window(100, YEAR)], redis=store, redis_name="local", on_failure="local",
                        local_share=10)
    assert deny.try_acquire("k")
    redis_server.kill()
    assert not deny.try_acquire("k")
    assert sum(local.allow("k") for _ in range(50)) == 10  # this process's share
    stats = store.stats()
    assert not stats["connected"] and stats["fast_failures"] >= 50
    with pytest.raises(sluice.InvalidArgument, match="on_failure must be"):
        RateLimiter([Window(1, YEAR)], redis=store, redis_name="x", on_failure="maybe")
    with pytest.raises(sluice.InvalidArgument, match="cluster.redis_name"):
        RateLimiter([Window(1, YEAR)], redis=store)


def test_gevent_hub_keeps_running_while_redis_is_stalled(redis_server):
    pytest.importorskip("gevent")
    store = _store(redis_server.port, command_timeout=1.0, reconnect_interval=5.0)
    limiter = RateLimiter([Window(1000, YEAR)], redis=store, redis_name="stall", on_failure="allow")
    assert limiter.try_acquire("k")  # connected
    redis_server.pause()
    decisions = []
    try:
        gaps = run_greenlets_beside_ticker(
            [lambda: decisions.append(limiter.allow("k")) for _ in range(20)], timeout=30)
    finally:
        redis_server.resume()
    assert decisions == [True] * 20  # the failure mode (allow) answered every one
    assert len(gaps) >= 20  # the ticker ran throughout
    # A blocking wait would have frozen the hub for the whole 1 s command timeout at least once.
    assert max(gaps) < 0.5, f"hub blocked for {max(gaps):.3f}s"


def test_asyncio_decide_async_does_not_block_the_loop(redis_server):
    limiter = RateLimiter([Window(3, YEAR)], redis=_store(redis_server.port), redis_name="aio", local_share=1)

    async def main():
        return await asyncio.gather(*(limiter.try_acquire_async("k") for _ in range(5)))

    decisions = asyncio.run(main())
    assert sum(d.allowed for d in decisions) == 3


def test_fork_child_gets_its_own_connection_and_the_parent_keeps_working(redis_server):
    limiter = RateLimiter([Window(100, YEAR)], redis=_store(redis_server.port), redis_name="fork", local_share=1)
    assert sum(limiter.allow("k") for _ in range(10)) == 10
    pid = os.fork()
    if pid == 0:
        ok = sum(limiter.allow("k") for _ in range(10)) == 10
        os._exit(0 if ok else 1)
    _, status = os.waitpid(pid, 0)
    assert os.WEXITSTATUS(status) == 0
    assert sum(limiter.allow("k") for _ in range(100)) == 80  # 100 - 10 - 10
    assert limiter.failure_mode_decisions == 0


def _hammer_leased(port, rule, attempts, results):
    limiter = RateLimiter([Window(600, YEAR)], redis=_store(port), redis_name=rule, local_share=1, mode="leased",
                          lease_units=25, on_failure="deny")
    results.put((sum(limiter.allow("k") for _ in range(attempts)),
                 limiter.lease_round_trips))


def test_leased_mode_decides_locally_and_never_exceeds_the_limit(redis_server):
    ctx = multiprocessing.get_context("spawn")
    results = ctx.Queue()
    workers = [ctx.Process(target=_hammer_leased, args=(redis_server.port, "leased", 400, results))
               for _ in range(3)]
    for w in workers:
        w.start()
    outcomes = [results.get(timeout=60) for _ in workers]
    for w in workers:
        w.join(timeout=60)
    admitted = sum(a for a, _ in outcomes)
    round_trips = sum(r for _, r in outcomes)
    assert admitted <= 600  # every leased unit was charged in Redis first
    assert admitted >= 600 - 3 * 25  # at most one lease per process left unspent
    assert round_trips < admitted / 5  # most decisions were local
    with pytest.raises(sluice.InvalidArgument, match="mode must be"):
        RateLimiter([Window(1, YEAR)], redis=_store(redis_server.port), redis_name="x", mode="loose")
