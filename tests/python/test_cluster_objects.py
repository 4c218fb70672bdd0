"""Cluster scope for LeakyBucket, TokenBudget and ConcurrencyLimiter from Python, against a
redis-server the test starts on a free port (RateLimiter: test_cluster.py)."""

import asyncio
import multiprocessing
import time

import pytest

from loop_gaps import await_beside_ticker, run_greenlets_beside_ticker

import sluice
from sluice import ConcurrencyLimiter, LeakyBucket, TokenBudget, Window

YEAR = 366 * 86400.0  # no refill while a test runs


def _store(port, **options):
    options.setdefault("command_timeout", 0.3)
    return sluice.RedisStore(port=port, **options)


def _hold_permits(port, attempts, barrier, results):
    cap = ConcurrencyLimiter(5, redis=_store(port), redis_name="cap", local_share=1)
    held = [p for p in (cap.try_acquire("app") for _ in range(attempts)) if p]
    results.put(len(held))
    barrier.wait(timeout=60)  # everyone holds what they got until all have tried
    for permit in held:
        permit.release()
    cap.in_flight("app")  # the releases went out before this reply came back


def test_concurrency_cap_is_exact_across_spawned_processes(redis_server):
    ctx = multiprocessing.get_context("spawn")
    results, barrier = ctx.Queue(), ctx.Barrier(3)
    workers = [ctx.Process(target=_hold_permits, args=(redis_server.port, 4, barrier, results))
               for _ in range(3)]
    for w in workers:
        w.start()
    held = sum(results.get(timeout=60) for _ in workers)
    for w in workers:
        w.join(timeout=60)
    assert held == 5  # 12 attempts at once from 3 processes: exactly the cap
    cap = ConcurrencyLimiter(5, redis=_store(redis_server.port), redis_name="cap", local_share=1)
    assert cap.in_flight("app") == 0  # every release arrived


def _spend_tokens(port, results):
    budget = TokenBudget([Window(3000, YEAR)], redis=_store(port), redis_name="tokens", local_share=1)
    granted = 0
    while True:
        with budget.try_reserve("tenant", 100) as reservation:
            if not reservation:
                break
            reservation.settle(70)
            granted += 1
    results.put(granted)


def test_token_budget_is_exact_across_spawned_processes(redis_server):
    ctx = multiprocessing.get_context("spawn")
    results = ctx.Queue()
    workers = [ctx.Process(target=_spend_tokens, args=(redis_server.port, results))
               for _ in range(3)]
    for w in workers:
        w.start()
    granted = sum(results.get(timeout=60) for _ in workers)
    for w in workers:
        w.join(timeout=60)
    charged = 70 * granted
    assert 3000 - 100 - 2 * 30 < charged <= 3000
    budget = TokenBudget([Window(3000, YEAR)], redis=_store(redis_server.port), redis_name="tokens", local_share=1)
    assert budget.peek("tenant").remaining == 3000 - charged  # every settle counted once


def test_token_budget_debt_refund_and_errors(redis_server):
    budget = TokenBudget([Window(1000, YEAR)], redis=_store(redis_server.port), redis_name="debt", local_share=1)
    assert budget.cluster
    with budget.reserve("t", 600) as r:
        balance = r.settle(1200)  # 600 over the estimate: debt
    assert balance.remaining == -200 and not balance.allowed and balance.retry_after > 0
    with pytest.raises(sluice.RateLimited):
        budget.reserve("t", 1)
    with pytest.raises(sluice.FailedPrecondition):
        r.settle(5)
    with pytest.raises(sluice.InvalidArgument, match="estimate"):
        budget.try_reserve("t", -1)
    with pytest.raises(ValueError, match="on_failure must be"):
        TokenBudget([Window(1, YEAR)], redis=_store(redis_server.port), redis_name="x",
                    on_failure="maybe")


def test_leaky_bucket_books_one_schedule_and_async_waits(redis_server):
    store = _store(redis_server.port)
    slow = LeakyBucket(1000, per=YEAR, max_wait=YEAR / 1000 * 3, redis=store, redis_name="slow", local_share=1)
    decisions = [slow.try_acquire("provider") for _ in range(6)]
    assert [d.allowed for d in decisions] == [True] * 4 + [False] * 2  # burst 1 + 3 slots
    slot = YEAR / 1000
    for k, d in enumerate(decisions[:4]):
        assert k * slot - 5 < d.delay <= k * slot
    fast = LeakyBucket(1000, per=1.0, burst=5, redis=store, redis_name="fast", local_share=1)

    async def main():
        return await asyncio.gather(*(fast.acquire_async("p") for _ in range(5)))

    assert all(d.allowed and d.delay == 0 for d in asyncio.run(main()))
    assert slow.failure_mode_decisions == 0 and fast.cluster


def test_failure_modes_of_the_other_objects(redis_server):
    store = _store(redis_server.port, reconnect_interval=30.0)
    cap = ConcurrencyLimiter(8, redis=store, redis_name="cap-down", on_failure="local", local_share=4)
    budget = TokenBudget([Window(100, YEAR)], redis=store, redis_name="tb-down", on_failure="deny")
    bucket = LeakyBucket(10, redis=store, redis_name="lb-down", on_failure="allow")
    assert cap.try_acquire("app")
    redis_server.kill()
    permits = [cap.try_acquire("app") for _ in range(4)]
    assert [bool(p) for p in permits] == [True, True, False, False]  # 8 / 4 per process
    assert not budget.try_reserve("t", 1)
    assert bucket.try_acquire("p").allowed
    assert cap.failure_mode_decisions == 4 and budget.failure_mode_decisions == 1
    assert cap.in_flight("app") == -1  # Redis did not answer


def test_cluster_permit_renew_and_expiry(redis_server):
    cap = ConcurrencyLimiter(1, lease=0.2, redis=_store(redis_server.port), redis_name="renew", local_share=1)
    with cap.acquire("app") as permit:
        permit.renew(60.0)
        permit.renew(0.05)
        deadline = time.monotonic() + 5
        while cap.in_flight("app") != 0 and time.monotonic() < deadline:
            time.sleep(0.01)  # only Redis's own clock can end the lease
        with pytest.raises(sluice.LeaseExpired):
            permit.renew()
        assert not permit
    assert cap.try_acquire("app")


def test_gevent_hub_runs_while_redis_is_stalled_for_every_object(redis_server):
    pytest.importorskip("gevent")
    store = _store(redis_server.port, command_timeout=1.0, reconnect_interval=5.0)
    cap = ConcurrencyLimiter(100, redis=store, redis_name="g-cap", on_failure="allow")
    budget = TokenBudget([Window(10**6, YEAR)], redis=store, redis_name="g-tb", on_failure="allow")
    bucket = LeakyBucket(10**6, redis=store, redis_name="g-lb", on_failure="allow")
    assert cap.try_acquire("app") and budget.try_reserve("t", 1)  # connected
    results = []

    def use_all():
        permit = cap.try_acquire("app")
        reservation = budget.try_reserve("t", 10)
        results.append((bool(permit), bool(reservation), bucket.try_acquire("p").allowed))
        permit.release()

    redis_server.pause()
    try:
        gaps = run_greenlets_beside_ticker([use_all] * 5)
    finally:
        redis_server.resume()
    assert results == [(True, True, True)] * 5  # the failure mode (allow) answered each
    # A blocking wait would have frozen the hub for the whole 1 s command timeout at least once.
    assert max(gaps) < 0.5, f"hub blocked for {max(gaps):.3f}s"


def test_many_greenlets_interleave_cluster_calls_on_a_live_redis(redis_server):
    # Replies come back in the order the calls went out, so greenlets resume in FIFO order while
    # later ones are still waiting: a cooperative wait inside a bound C++ call would abort here
    # (pybind11's per-thread loader stack), which is why every wait happens in Python.
    gevent = pytest.importorskip("gevent")
    store = _store(redis_server.port)
    cap = ConcurrencyLimiter(1000, redis=store, redis_name="i-cap", local_share=1)
    budget = TokenBudget([Window(10**5, YEAR)], redis=store, redis_name="i-tb", local_share=1)
    bucket = LeakyBucket(10**6, max_wait=60.0, redis=store, redis_name="i-lb", local_share=1)
    limiter = sluice.RateLimiter([Window(10**9, YEAR)], redis=store, redis_name="i-rl", local_share=1)
    done = []

    def worker(n):
        for i in range(10):
            with cap.try_acquire(f"app{n % 3}") as permit:
                assert permit
                permit.renew()
                with budget.try_reserve("t", 10) as reservation:
                    assert reservation
                    reservation.settle(7)
                assert budget.charge("t", 1).allowed
                assert bucket.try_acquire("p").allowed
                assert limiter.try_acquire(f"k{i}")
        done.append(n)

    gevent.joinall([gevent.spawn(worker, n) for n in range(40)], timeout=60, raise_error=True)
    assert sorted(done) == list(range(40))
    assert budget.peek("t").remaining == 10**5 - 400 * 8  # no refill within the test
    assert sum(cap.in_flight(f"app{k}") for k in range(3)) == 0


def test_asyncio_loop_runs_while_redis_is_stalled_for_every_object(redis_server):
    store = _store(redis_server.port, command_timeout=1.0, reconnect_interval=5.0)
    cap = ConcurrencyLimiter(100, redis=store, redis_name="a-cap", on_failure="allow")
    budget = TokenBudget([Window(10**6, YEAR)], redis=store, redis_name="a-tb", on_failure="allow")
    bucket = LeakyBucket(10**6, redis=store, redis_name="a-lb", on_failure="allow")
    held = cap.try_acquire("app")
    assert held and budget.try_reserve("t", 1)  # connected

    async def use_all():
        permit = await cap.try_acquire_async("app")
        reservation = await budget.reserve_async("t", 10)
        await reservation.settle_async(5)
        decision = await bucket.try_acquire_async("p")
        with pytest.raises(sluice.Error):  # no failure mode can renew a lease in Redis
            await held.renew_async()
        return bool(permit), decision.allowed

    async def use_all_three():
        return await asyncio.gather(*(use_all() for _ in range(3)))

    redis_server.pause()
    try:
        results, gaps = asyncio.run(await_beside_ticker(use_all_three()))
    finally:
        redis_server.resume()
    assert results == [(True, True)] * 3
    assert max(gaps) < 0.5, f"loop blocked for {max(gaps):.3f}s"
