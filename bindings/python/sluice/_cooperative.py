"""Calls that may wait for a Redis reply, made cooperative.

A bound (C++) method must never let another greenlet run while it executes: pybind11 keeps a
per-thread stack of argument loaders, and a greenlet switch inside a bound call interleaves two
greenlets' frames on that stack and aborts the process. So every call that may wait for Redis is
split in two: a bound ``start*`` method returns a pending result at once, the wait happens here in
Python (on the reply's file descriptor: gevent's ``wait_read`` under gevent, ``poll`` for threads,
``add_reader`` for asyncio), and ``result()`` then takes the answer without waiting.

Outside cluster scope every pending result is already done, so none of this waits.
"""

from __future__ import annotations

from ._core import Permit, Reservation
from ._waiting import Readable, run_plan_async, wait_readable, wait_readable_async


def result_of(pending):
    """The result of a pending call, waiting cooperatively for its reply if need be."""
    if not pending.done():
        wait_readable(pending.fileno())
    return pending.result()


def pending_plan(pending):
    """A wait plan (see ``_waiting.run_plan``) for one pending call."""
    if not pending.done():
        yield Readable(pending.fileno())
    return pending.result()


def _renew(self, lease=None):
    pending = self._start_renew(lease)
    if not pending.done():
        wait_readable(pending.fileno())
    self._finish_renew(pending)


async def _renew_async(self, lease=None):
    pending = self._start_renew(lease)
    if not pending.done():
        await wait_readable_async(pending.fileno())
    self._finish_renew(pending)


def _settle(self, actual):
    return result_of(self._start_settle(actual))


async def _settle_async(self, actual):
    return await run_plan_async(pending_plan(self._start_settle(actual)))


def _cancel(self):
    result_of(self._start_settle(0))


def _reservation_exit(self, exc_type, exc, traceback):
    if exc_type is not None and self.pending:
        _cancel(self)
    return False


_renew.__doc__ = Permit.renew.__doc__
_renew_async.__doc__ = "``renew`` for coroutines: awaits Redis's reply in cluster scope."
_settle.__doc__ = Reservation.settle.__doc__
_settle_async.__doc__ = "``settle`` for coroutines: awaits Redis's reply in cluster scope."
_cancel.__doc__ = Reservation.cancel.__doc__


def install() -> None:
    """Replaces the methods of Permit and Reservation that may wait for Redis (their objects are
    made by C++, so the facade cannot subclass them)."""
    Permit.renew = _renew
    Permit.renew_async = _renew_async
    Reservation.settle = _settle
    Reservation.settle_async = _settle_async
    Reservation.cancel = _cancel
    Reservation.__exit__ = _reservation_exit
