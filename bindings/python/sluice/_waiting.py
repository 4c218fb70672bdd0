"""Cooperative waiting: sluice never blocks the caller's event loop.

A gevent worker runs every greenlet on one OS thread, so a plain ``time.sleep`` inside a greenlet
that gevent has not patched would stall them all. ``sleep`` picks gevent's sleep whenever the
caller runs under gevent (monkey-patched, or inside a gevent greenlet), else ``time.sleep``.
Coroutines use the ``*_async`` methods, which await ``asyncio.sleep``.
"""

from __future__ import annotations

import select
import sys
import time

from ._errors import InvalidArgument


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


# The longest wait sluice accepts, as its native side does for durations (9e9 s, near the int64
# nanosecond range): anything longer is a mistake, not a timeout.
_MAX_SECONDS = 9.0e9


def checked_timeout(timeout, field: str = "timeout") -> float:
    """`timeout` as float seconds, or ``InvalidArgument`` naming `field`. NaN is refused: every
    comparison with it is false, so a wait bounded by it would never end."""
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)):
        raise TypeError(f"{field} must be a number of seconds, got {type(timeout).__name__}")
    seconds = float(timeout)
    if not 0.0 <= seconds <= _MAX_SECONDS:
        raise InvalidArgument(
            f"{field} must be a finite number of seconds in [0, 9e9], got {timeout!r}")
    return seconds


class Readable:
    """What a wait plan yields to wait until a file descriptor is readable (a Redis reply)."""

    __slots__ = ("fd",)

    def __init__(self, fd: int) -> None:
        self.fd = fd


def wait_readable(fd: int) -> None:
    """Waits until `fd` is readable without blocking other greenlets (or threads)."""
    if _gevent_sleep_if_active() is not None:
        from gevent.socket import wait_read

        wait_read(fd)
    else:
        poller = select.poll()  # not select.select: it fails for descriptors >= 1024
        poller.register(fd, select.POLLIN)
        poller.poll()


async def wait_readable_async(fd: int) -> None:
    import asyncio

    loop = asyncio.get_running_loop()
    ready = loop.create_future()
    loop.add_reader(fd, lambda: ready.done() or ready.set_result(None))
    try:
        await ready
    finally:
        loop.remove_reader(fd)


# A wait *plan* is a generator that yields what to wait for before its next step (seconds to
# sleep, or a Readable file descriptor) and returns the final result (or raises). Writing each waiting strategy once as a plan lets one
# driver run it for threads and gevent, and another for asyncio.
def run_plan(plan):
    """Runs a wait plan, sleeping cooperatively between attempts."""
    try:
        while True:
            item = next(plan)
            if isinstance(item, Readable):
                wait_readable(item.fd)
            else:
                sleep(item)
    except StopIteration as finished:
        return finished.value


async def run_plan_async(plan):
    """Runs a wait plan, awaiting ``asyncio.sleep`` between attempts."""
    import asyncio

    try:
        while True:
            item = next(plan)
            if isinstance(item, Readable):
                await wait_readable_async(item.fd)
            else:
                await asyncio.sleep(item)
    except StopIteration as finished:
        return finished.value
