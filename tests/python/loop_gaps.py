"""Runs work beside a ticker that wakes every 2 ms and records the gaps between its wake-ups.

The longest gap is how long the event loop was blocked: the evidence that sluice waits for Redis
cooperatively. One helper for gevent greenlets, one for asyncio coroutines. Python's cyclic
garbage collector is held off while they measure: late in the full suite a collection of the
oldest generation takes ~0.1 s, a gap that is Python's, not sluice's (seen once in a CI run).
"""

import asyncio
import contextlib
import gc
import time

TICK = 0.002


@contextlib.contextmanager
def _no_cyclic_gc():
    gc.collect()
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def run_greenlets_beside_ticker(targets, timeout=60):
    """Runs each callable in `targets` as a greenlet until all finish; returns the ticker's gaps."""
    import gevent
    import gevent.event

    gaps, done = [], gevent.event.Event()

    def ticker():
        last = time.monotonic()
        while not done.is_set():
            gevent.sleep(TICK)
            now = time.monotonic()
            gaps.append(now - last)
            last = now

    with _no_cyclic_gc():
        tick = gevent.spawn(ticker)
        try:
            gevent.joinall([gevent.spawn(t) for t in targets], timeout=timeout, raise_error=True)
        finally:
            done.set()
            tick.join()
    return gaps


async def await_beside_ticker(awaitable, timeout=60):
    """Awaits `awaitable`; returns its result and the ticker's gaps."""
    gaps, stop = [], asyncio.Event()

    async def ticker():
        last = time.monotonic()
        while not stop.is_set():
            await asyncio.sleep(TICK)
            now = time.monotonic()
            gaps.append(now - last)
            last = now

    with _no_cyclic_gc():
        tick = asyncio.ensure_future(ticker())
        try:
            result = await asyncio.wait_for(awaitable, timeout)
        finally:
            stop.set()
            await tick
    return result, gaps
