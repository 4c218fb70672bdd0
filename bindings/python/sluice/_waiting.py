"""Waiting, written once: every sluice operation that may wait is a *plan* run by two drivers.

A gevent worker runs every greenlet on one OS thread, so a plain ``time.sleep`` inside a greenlet
that gevent has not patched would stall them all. ``sleep`` picks gevent's sleep whenever the
caller runs under gevent (monkey-patched, or inside a gevent greenlet), else ``time.sleep``.
Coroutines use the ``*_async`` methods, which await ``asyncio.sleep``.

A plan is a generator. It yields what it needs done before its next step and receives the result
(or has the exception raised at its ``yield``):

* a number: sleep that many seconds;
* ``Readable(fd)``: wait until a file descriptor is readable (a Redis reply, a cache flight);
* ``Invoke(fn, *args)``: call the caller's function (awaited by the async driver);
* ``Open(fn, *args)``: call a function that returns chunks, and iterate them (``Next(it)`` takes
  the next one, or ``END``);
* ``Emit(value)``: hand a value to the consumer (stream drivers only).

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
# nanosecond range): anything longer is a mistake, not a timeout.
_MAX_SECONDS = 9.0e9


def checked_timeout(timeout: Any, field: str = "timeout") -> float:
    """`timeout` as float seconds, or ``InvalidArgument`` naming `field`. NaN is refused: every
    comparison with it is false, so a wait bounded by it would never end."""
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)):
        raise TypeError(f"{field} must be a number of seconds, got {type(timeout).__name__}")
    seconds = float(timeout)
    if not 0.0 <= seconds <= _MAX_SECONDS:
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

class _Effect:
    """A request of a plan to its driver. ``cancelled`` is set by the async driver when the
    request was interrupted by the task's cancellation (a plan lets that propagate untouched)."""

    __slots__ = ("cancelled",)

    def __init__(self) -> None:
        self.cancelled = False


class Readable(_Effect):
    """Wait until the file descriptor is readable."""

    __slots__ = ("fd",)

    def __init__(self, fd: int) -> None:
        self.cancelled = False
        self.fd = fd


class Invoke(_Effect):
    """Call ``fn(*args)``; the async driver awaits what it returns."""

    __slots__ = ("fn", "args")

    def __init__(self, fn: Callable[..., Any], *args: Any) -> None:
        self.cancelled = False
        self.fn = fn
        self.args = args


class Open(_Effect):
    """Call ``fn(*args)`` and iterate what it returns: an iterable (sync driver), an async
    iterable or, with ``awaitable``, an awaitable of one (async driver)."""

    __slots__ = ("fn", "args", "awaitable", "owner")

    def __init__(self, fn: Callable[..., Any], *args: Any, awaitable: bool = False,
                 owner: str = "") -> None:
        self.cancelled = False
        self.fn = fn
        self.args = args
        self.awaitable = awaitable
        self.owner = owner


class Next(_Effect):
    """The next item of an iterator made by ``Open``, or ``END``."""

    __slots__ = ("iterator",)

    def __init__(self, iterator: Any) -> None:
        self.cancelled = False
        self.iterator = iterator


class Emit(_Effect):
    """Hand ``value`` to the consumer of a stream."""

    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.cancelled = False
        self.value = value


END = object()  # what Next receives when the iterator is exhausted


def pending_plan(pending: Any) -> Plan[Any]:
    """The plan of one native pending call (``start*``): wait for its reply, take its result."""
    if not pending.done():
        yield Readable(pending.fileno())
    return pending.result()


# ---- the drivers ---------------------------------------------------------------------------------

def _resume(plan: Plan[Any], box: list) -> Any:
    """Sends the box's value into the plan, or raises its error there. The box is emptied first
    and the error dropped after: an exception's traceback holds these frames, and a reference
    from them back to the exception would keep the plan (and the native call it holds, with its
    in-flight count) alive until the next garbage collection."""
    value, error = box
    box[0] = box[1] = None
    if error is None:
        return plan.send(value)
    try:
        return plan.throw(error)
    finally:
        error = None  # noqa: F841


def _perform(effect: Any) -> Any:
    kind = type(effect)
    if kind is Invoke:
        return effect.fn(*effect.args)
    if kind is Next:
        return next(effect.iterator, END)
    if kind is Readable:
        wait_readable(effect.fd)
        return None
    if kind is Open:
        return iter(effect.fn(*effect.args))
    sleep(effect)
    return None


def run_plan(plan: Plan[T]) -> T:
    """Runs a plan for threads and gevent: sleeps and waits cooperatively, calls directly."""
    box = [None, None]
    while True:
        try:
            effect = _resume(plan, box)
        except StopIteration as finished:
            return finished.value
        try:
            box[0] = _perform(effect)
        except BaseException as exc:
            box[1] = exc


def run_stream(plan: Plan[None]) -> Iterator[Any]:
    """Runs a plan as a generator of the values it emits (threads and gevent). Closing the
    generator closes the plan (GeneratorExit at its ``Emit``)."""
    box = [None, None]
    while True:
        try:
            effect = _resume(plan, box)
        except StopIteration:
            return
        if type(effect) is Emit:
            try:
                yield effect.value
            except GeneratorExit:
                plan.close()
                raise
            except BaseException as exc:
                box[1] = exc
            continue
        try:
            box[0] = _perform(effect)
        except BaseException as exc:
            box[1] = exc


def _is_cancellation(exc: BaseException) -> bool:
    asyncio = sys.modules.get("asyncio")
    return asyncio is not None and isinstance(exc, asyncio.CancelledError)


async def _perform_async(effect: Any) -> Any:
    import asyncio

    kind = type(effect)
    if kind is Invoke:
        return await effect.fn(*effect.args)
    if kind is Next:
        try:
            return await effect.iterator.__anext__()
        except StopAsyncIteration:
            return END
    if kind is Readable:
        await wait_readable_async(effect.fd)
        return None
    if kind is Open:
        source = effect.fn(*effect.args)
        if effect.awaitable and inspect.isawaitable(source):
            source = await source
        if not hasattr(source, "__aiter__"):
            if effect.awaitable:
                raise TypeError(f"{effect.owner}: fn must return an async iterable, got "
                                f"{type(source).__name__}")
            raise TypeError("'async for' requires an object with __aiter__ method, got "
                            f"{type(source).__name__}")
        return source.__aiter__()
    await asyncio.sleep(effect)
    return None


async def run_plan_async(plan: Plan[T]) -> T:
    """Runs a plan for coroutines: awaits ``asyncio.sleep``, the loop's reader, and ``fn``."""
    box: list = [None, None]
    while True:
        try:
            effect = _resume(plan, box)
        except StopIteration as finished:
            return finished.value
        try:
            box[0] = await _perform_async(effect)
        except BaseException as exc:
            if isinstance(effect, _Effect) and _is_cancellation(exc):
                effect.cancelled = True
            box[1] = exc


async def run_stream_async(plan: Plan[None]) -> AsyncIterator[Any]:
    """Runs a plan as an async generator of the values it emits."""
    box: list = [None, None]
    while True:
        try:
            effect = _resume(plan, box)
        except StopIteration:
            return
        if type(effect) is Emit:
            try:
                yield effect.value
            except GeneratorExit:
                plan.close()
                raise
            except BaseException as exc:
                if _is_cancellation(exc):
                    effect.cancelled = True
                box[1] = exc
            continue
        try:
            box[0] = await _perform_async(effect)
        except BaseException as exc:
            if isinstance(effect, _Effect) and _is_cancellation(exc):
                effect.cancelled = True
            box[1] = exc
