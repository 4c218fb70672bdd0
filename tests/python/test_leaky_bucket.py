import asyncio

import pytest

import sluice
from sluice import LeakyBucket, ManualClock


def test_delays_spread_a_burst():
    clock = ManualClock()
    bucket = LeakyBucket(rate=4, max_wait=1.0, clock=clock)
    delays = [bucket.try_acquire("p").delay for _ in range(5)]
    assert delays == pytest.approx([0.0, 0.25, 0.5, 0.75, 1.0])
    refused = bucket.try_acquire("p")
    assert not refused.allowed
    assert refused.retry_after == pytest.approx(0.25)
    assert bucket.rate == 4 and bucket.per == 1.0 and bucket.burst == 1 and bucket.max_wait == 1.0


def test_acquire_sleeps_then_returns_and_raises_past_max_wait():
    # A frozen clock makes every delay exact; acquire still really sleeps it (1 ms here).
    bucket = LeakyBucket(rate=1000, burst=1, max_wait=0.002, clock=ManualClock())
    assert bucket.acquire("p").delay == 0.0
    assert bucket.acquire("p").delay == pytest.approx(0.001, abs=1e-9)
    for _ in range(3):
        bucket.try_acquire("p")  # book the next slots without waiting for them
    with pytest.raises(sluice.RateLimited) as err:
        bucket.acquire("p")  # would have to wait past max_wait
    assert 0 < err.value.retry_after <= 0.003


def test_acquire_async():
    bucket = LeakyBucket(rate=1000, burst=1, max_wait=1.0, clock=ManualClock())

    async def run():
        return await asyncio.gather(*(bucket.acquire_async("p") for _ in range(20)))

    delays = sorted(d.delay for d in asyncio.run(run()))
    assert delays == pytest.approx([i / 1000 for i in range(20)], abs=1e-9)
