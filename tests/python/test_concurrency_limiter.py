import asyncio

import pytest

import sluice
from sluice import ConcurrencyLimiter, ManualClock


def test_cap_and_context_manager():
    cl = ConcurrencyLimiter(2, clock=ManualClock())
    with cl.acquire("app") as a:
        assert a and a.held
        with cl.acquire("app"):
            assert cl.in_flight("app") == 2
            refused = cl.try_acquire("app")
            assert not refused
            assert refused.decision.limit == 2 and refused.decision.remaining == 0
            with pytest.raises(sluice.RateLimited):
                cl.acquire("app")  # timeout 0: no waiting
        assert cl.in_flight("app") == 1
    assert cl.in_flight("app") == 0


def test_exceptions_inside_the_block_still_release():
    cl = ConcurrencyLimiter(1)
    with pytest.raises(RuntimeError):
        with cl.acquire("app"):
            raise RuntimeError("upstream failed")
    assert cl.in_flight("app") == 0


def test_leaked_permit_is_reclaimed_when_its_lease_ends():
    clock = ManualClock()
    cl = ConcurrencyLimiter(1, lease=30.0, clock=clock)
    leaked = cl.try_acquire("app")  # a holder that died without releasing
    assert leaked.expires_at == pytest.approx(30.0)
    clock.advance(29.999)
    assert not cl.try_acquire("app")
    clock.advance(0.001)
    fresh = cl.try_acquire("app")
    assert fresh
    assert leaked.release() is False  # its slot was reclaimed; it cannot free fresh's slot
    assert cl.in_flight("app") == 1
    with pytest.raises(sluice.LeaseExpired):
        leaked.renew()


def test_renew_keeps_a_long_stream_alive():
    clock = ManualClock()
    cl = ConcurrencyLimiter(1, lease=10.0, clock=clock)
    run = cl.try_acquire("workflow")
    for _ in range(120):  # 18 minutes of streaming with a heartbeat every 9 s
        clock.advance(9.0)
        run.renew()
        assert not cl.try_acquire("workflow")
    run.renew(lease=60.0)
    assert run.expires_at == pytest.approx(clock.now() + 60.0)
    assert run.release() is True
    assert run.release() is True  # idempotent: it holds nothing now


def test_permit_outliving_its_name_keeps_the_limiter_alive():
    permit = ConcurrencyLimiter(1).try_acquire("k")  # the limiter has no other reference
    assert permit.held
    assert permit.release()


def test_acquire_waits_for_a_slot_with_a_timeout():
    import threading

    cl = ConcurrencyLimiter(1)
    held = cl.try_acquire("app")
    threading.Timer(0.02, held.release).start()
    with cl.acquire("app", timeout=5.0) as p:
        assert p.held
    with pytest.raises(sluice.RateLimited):
        with cl.acquire("app", timeout=0.0):
            with cl.acquire("app", timeout=0.01):
                pass


def test_acquire_async():
    cl = ConcurrencyLimiter(2)
    peak = 0

    async def work():
        nonlocal peak
        with await cl.acquire_async("app", timeout=5.0):
            peak = max(peak, cl.in_flight("app"))
            await asyncio.sleep(0.001)

    async def main():
        await asyncio.gather(*(work() for _ in range(20)))

    asyncio.run(main())
    assert peak == 2
    assert cl.in_flight("app") == 0
