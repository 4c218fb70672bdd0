"""Waiting, written once: every sluice operation that may wait is a *plan* run by two drivers.

A gevent worker runs every greenlet on one OS thread, so a plain ``time.sleep`` inside a greenlet
that gevent has not patched would stall them all. ``sleep`` picks gevent's sleep whenever the
caller runs under gevent (monkey-patched, or inside a gevent greenlet), else ``time.sleep``.
Coroutines use the ``*_async`` methods, which await ``asyncio.sleep``.

A plan is a generator. It yields what it needs done before its next step and receives the result
(or has the exception raised at its ``yield``):

* a number: sleep that many seconds;
* ``(READABLE, fd)``: wait until a file descriptor is readable (a Redis reply, a cache flight);
* ``(INVOKE, fn, args)``: call the caller's function (awaited by the async driver);
* ``(OPEN, fn, args, owner)``: call a function that returns chunks and iterate them
  (``(NEXT, it)`` takes the next one, or ``END``);
* ``(EMIT, value)``: hand a value to the consumer (stream drivers only).

The ``*_async`` methods of the limiters and of ResponseCache take their first decision (or cache
lookup) synchronously in their own coroutine and build a plan only when it says wait, or when a
Redis reply is still on its way: an admitted call schedules nothing on the loop (issue 19).

``run_plan`` / ``run_plan_async`` return the plan's result; ``run_stream`` / ``run_stream_async``
are generators of what it emits. No native call is on the stack while a driver waits: a greenlet
switch inside a bound call would interleave pybind11's per-thread argument-loader stack between
greenlets and abort the process (see strict_casters.h).
"""

from __future__ import annotations

import inspect
import select
import sys
import time
from typing import Any, AsyncIterator, Callable, Generator, Iterator, TypeVar

from ._errors import InvalidArgument

T = TypeVar("T")
Plan = Generator[Any, Any, T]


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
# nanosecond range): anything longer is a mistake, not a timeout. The ``*_async`` fast paths
# accept a float in [0, MAX_SECONDS] inline and leave anything else to checked_timeout.
MAX_SECONDS = 9.0e9


def checked_timeout(timeout: Any, field: str = "timeout") -> float:
    """`timeout` as float seconds, or ``InvalidArgument`` naming `field`. NaN is refused: every
    comparison with it is false, so a wait bounded by it would never end."""
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)):
        raise TypeError(f"{field} must be a number of seconds, got {type(timeout).__name__}")
    seconds = float(timeout)
    if not 0.0 <= seconds <= MAX_SECONDS:
        raise InvalidArgument(
            f"{field} must be a finite number of seconds in [0, 9e9], got {timeout!r}")
    return seconds


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


# ---- what a plan yields ------------------------------------------------------------------------
# Effects are tuples (kind, ...) and sleeps plain numbers: the drivers are on every waiting call's
# path (acquire, FallbackPolicy.call, get_or_fetch), and a tuple costs a fraction of an object.
INVOKE = 0    # (INVOKE, fn, args): fn(*args); the async driver awaits what it returns
OPEN = 1      # (OPEN, fn, args, owner): iterate fn(*args): an iterable (sync driver), an async
              # iterable (async driver), or with an `owner` name also an awaitable of one
NEXT = 2      # (NEXT, iterator): its next item, or END
EMIT = 3      # (EMIT, value): hand value to the consumer (stream drivers)
READABLE = 4  # (READABLE, fd): wait until fd is readable

END = object()  # what NEXT sends when the iterator is exhausted

# Cancellation (asyncio) closes the plan: GeneratorExit at its yield, its finally blocks run, and
# a plan must let GeneratorExit through untouched (never report it as an attempt's failure).


def pending_plan(pending: Any) -> Plan[Any]:
    """The plan of one native pending call (``start*``): wait for its reply, take its result."""
    if not pending.done():
        yield (READABLE, pending.fileno())
    return pending.result()


# ---- the drivers ---------------------------------------------------------------------------------

def _throw(plan: Plan[Any], error: BaseException) -> Any:
    """Raises `error` inside the plan. The reference is dropped after: the traceback of whatever
    the plan raises holds this frame, and a reference back to the exception from it would keep
    the plan (and the native call it holds, with its in-flight count) alive until the next
    garbage collection."""
    try:
        return plan.throw(error)
    finally:
        error = None  # noqa: F841


def _perform(effect: Any) -> Any:
    if effect.__class__ is not tuple:
        sleep(effect)
        return None
    kind = effect[0]
    if kind == INVOKE:
        return effect[1](*effect[2])
    if kind == NEXT:
        return next(effect[1], END)
    if kind == READABLE:
        wait_readable(effect[1])
        return None
    if kind == OPEN:
        return iter(effect[1](*effect[2]))
    raise TypeError(f"sluice: a plan yielded {effect!r} to a driver that cannot do it")


def run_plan(plan: Plan[T]) -> T:
    """Runs a plan for threads and gevent: sleeps and waits cooperatively, calls directly."""
    send = plan.send
    try:
        effect = send(None)
        while True:
            try:
                if effect.__class__ is tuple and effect[0] == INVOKE:  # the common effect, inline
                    value = effect[1](*effect[2])
                else:
                    value = _perform(effect)
            except BaseException as exc:
                effect = _throw(plan, exc)
                continue
            effect = send(value)
    except StopIteration as finished:
        return finished.value


def run_stream(plan: Plan[None]) -> Iterator[Any]:
    """Runs a plan as a generator of the values it emits (threads and gevent). Closing the
    generator closes the plan (GeneratorExit at its EMIT)."""
    send = plan.send
    try:
        effect = send(None)
        while True:
            try:
                if effect.__class__ is tuple and effect[0] == EMIT:
                    try:
                        yield effect[1]
                    except GeneratorExit:
                        plan.close()
                        raise
                    value = None
                else:
                    value = _perform(effect)
            except GeneratorExit:
                raise
            except BaseException as exc:
                effect = _throw(plan, exc)
                continue
            effect = send(value)
    except StopIteration:
        return


def _is_cancellation(exc: BaseException) -> bool:
    asyncio = sys.modules.get("asyncio")
    return asyncio is not None and isinstance(exc, asyncio.CancelledError)


async def _perform_async(effect: Any) -> Any:
    import asyncio

    if effect.__class__ is not tuple:
        await asyncio.sleep(effect)
        return None
    kind = effect[0]
    if kind == INVOKE:
        return await effect[1](*effect[2])
    if kind == NEXT:
        try:
            return await effect[1].__anext__()
        except StopAsyncIteration:
            return END
    if kind == READABLE:
        await wait_readable_async(effect[1])
        return None
    if kind == OPEN:
        owner = effect[3]
        source = effect[1](*effect[2])
        if owner and inspect.isawaitable(source):
            source = await source
        if not hasattr(source, "__aiter__"):
            if owner:
                raise TypeError(f"{owner}: fn must return an async iterable, got "
                                f"{type(source).__name__}")
            raise TypeError("'async for' requires an object with __aiter__ method, got "
                            f"{type(source).__name__}")
        return source.__aiter__()
    raise TypeError(f"sluice: a plan yielded {effect!r} to a driver that cannot do it")


async def run_plan_async(plan: Plan[T]) -> T:
    """Runs a plan for coroutines: awaits ``asyncio.sleep``, the loop's reader, and ``fn``."""
    send = plan.send
    try:
        effect = send(None)
        while True:
            try:
                value = await _perform_async(effect)
            except BaseException as exc:
                if _is_cancellation(exc):
                    plan.close()
                    raise
                effect = _throw(plan, exc)
                continue
            effect = send(value)
    except StopIteration as finished:
        return finished.value


async def run_stream_async(plan: Plan[None]) -> AsyncIterator[Any]:
    """Runs a plan as an async generator of the values it emits."""
    send = plan.send
    try:
        effect = send(None)
        while True:
            try:
                if effect.__class__ is tuple and effect[0] == EMIT:
                    yield effect[1]
                    value = None
                else:
                    value = await _perform_async(effect)
            except BaseException as exc:
                if isinstance(exc, GeneratorExit) or _is_cancellation(exc):
                    plan.close()
                    raise
                effect = _throw(plan, exc)
                continue
            effect = send(value)
    except StopIteration:
        return
