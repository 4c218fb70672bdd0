"""Cooperative waiting: sluice never blocks the caller's event loop.

A gevent worker runs every greenlet on one OS thread, so a plain ``time.sleep`` inside a greenlet
that gevent has not patched would stall them all. ``sleep`` picks gevent's sleep whenever the
caller runs under gevent (monkey-patched, or inside a gevent greenlet), else ``time.sleep``.
Coroutines use the ``*_async`` methods, which await ``asyncio.sleep``.
"""

from __future__ import annotations

import sys
import time


def _gevent_sleep_if_active():
    gevent = sys.modules.get("gevent")
    if gevent is None:
        return None
    monkey = sys.modules.get("gevent.monkey")
    if monkey is not None and monkey.is_module_patched("time"):
        return gevent.sleep
    if isinstance(gevent.getcurrent(), gevent.Greenlet):
        return gevent.sleep
    return None


def sleep(seconds: float) -> None:
    """Sleeps `seconds` without blocking other greenlets (or threads)."""
    seconds = max(0.0, seconds)
    gevent_sleep = _gevent_sleep_if_active()
    if gevent_sleep is not None:
        gevent_sleep(seconds)
    else:
        time.sleep(seconds)


def monotonic() -> float:
    return time.monotonic()


# A wait *plan* is a generator that yields how many seconds to wait before its next attempt and
# returns the final result (or raises). Writing each waiting strategy once as a plan lets one
# driver run it for threads and gevent, and another for asyncio.
def run_plan(plan):
    """Runs a wait plan, sleeping cooperatively between attempts."""
    try:
        while True:
            sleep(next(plan))
    except StopIteration as finished:
        return finished.value


async def run_plan_async(plan):
    """Runs a wait plan, awaiting ``asyncio.sleep`` between attempts."""
    import asyncio

    try:
        while True:
            await asyncio.sleep(next(plan))
    except StopIteration as finished:
        return finished.value
