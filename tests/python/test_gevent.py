"""sluice never blocks a gevent hub: waits are cooperative."""

import pytest

import sluice

gevent = pytest.importorskip("gevent")


def test_thousand_greenlets_through_a_leaky_bucket_keep_the_hub_serving():
    bucket = sluice.LeakyBucket(rate=2_000, max_wait=1.0)  # 1,000 departures over 0.5 s
    for _ in range(400):
        bucket.try_acquire("provider")  # 200 ms of queue first: every greenlet's slot is later
    waiting = 0
    most_waiting = 0
    ticks_while_waiting = 0
    delays = []

    def worker():
        nonlocal waiting, most_waiting
        waiting += 1
        most_waiting = max(most_waiting, waiting)
        delays.append(bucket.acquire("provider").delay)
        waiting -= 1

    def ticker():
        nonlocal ticks_while_waiting
        while len(delays) < 1000:
            if waiting:
                ticks_while_waiting += 1
            gevent.sleep(0.001)

    jobs = [gevent.spawn(worker) for _ in range(1000)] + [gevent.spawn(ticker)]
    gevent.joinall(jobs, timeout=60, raise_error=True)
    assert len(delays) == 1000
    # Had acquire blocked the thread, one greenlet at a time would have been waiting; cooperatively
    # they all wait together (the queue ahead outlasts spawning them all).
    assert most_waiting == 1000
    # And another greenlet kept running while they waited.
    assert ticks_while_waiting >= 5
    # Nobody was refused: 200 ms of queue plus 1,000 departures at 2,000/s fit within max_wait.
    assert max(delays) <= 1.0


def test_concurrency_acquire_waits_cooperatively_under_gevent():
    cl = sluice.ConcurrencyLimiter(2)
    peak = 0

    def work():
        nonlocal peak
        with cl.acquire("app", timeout=10.0):
            peak = max(peak, cl.in_flight("app"))
            gevent.sleep(0.001)

    gevent.joinall([gevent.spawn(work) for _ in range(50)], timeout=60, raise_error=True)
    assert peak == 2
    assert cl.in_flight("app") == 0


def test_rate_limiter_acquire_waits_cooperatively_under_gevent():
    rl = sluice.RateLimiter([sluice.Window.per_second(1000, burst=1)])
    done = []

    def work():
        done.append(rl.acquire("k", timeout=5.0).allowed)

    gevent.joinall([gevent.spawn(work) for _ in range(50)], timeout=60, raise_error=True)
    assert done == [True] * 50
