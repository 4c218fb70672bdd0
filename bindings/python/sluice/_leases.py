"""Permit and Reservation: the calls that may wait for Redis, written once as plans.

``Permit`` and ``Reservation`` are native classes (C++ makes them: a ConcurrencyLimiter hands out
permits, a TokenBudget reservations), so the facade cannot choose their class in ``__new__``.
Renewing a lease and settling a reservation wait for Redis in cluster scope, and a bound method
must never let another greenlet run (sluice/_waiting.py). So their waiting methods are these
plans, run by the sync driver (threads, gevent) and the async one, and ``install`` puts them on
the two native classes once, at import.

Known debt (issue 14): this is the one place the facade still sets attributes of ``_core``
classes; the way out is a facade-owned Permit/Reservation returned by every path that makes one
(try_acquire, acquire, start().result()), which changes what PendingPermit.result() returns.
"""

from __future__ import annotations

from typing import Any, Optional

from ._core import Decision, Permit, Reservation
from ._waiting import READABLE, pending_plan, run_plan, run_plan_async


def _renew_plan(permit: Permit, lease: Optional[float], pending: Any = None):
    if pending is None:
        pending = permit._start_renew(lease)
    if not pending.done():
        yield (READABLE, pending.fileno())
    permit._finish_renew(pending)


def _renew(self: Permit, lease: Optional[float] = None) -> None:
    pending = self._start_renew(lease)
    if pending.done():  # process and host scope: no plan's round trips
        self._finish_renew(pending)
        return
    run_plan(_renew_plan(self, lease, pending))


async def _renew_async(self: Permit, lease: Optional[float] = None) -> None:
    pending = self._start_renew(lease)
    if pending.done():  # process and host scope: nothing to await (issue 19)
        self._finish_renew(pending)
        return
    await run_plan_async(_renew_plan(self, lease, pending))


def _settle(self: Reservation, actual: int) -> Decision:
    pending = self._start_settle(actual)
    if pending.done():  # process and host scope: no plan's round trips (about 0.4 us)
        return pending.result()
    return run_plan(pending_plan(pending))


async def _settle_async(self: Reservation, actual: int) -> Decision:
    pending = self._start_settle(actual)
    if pending.done():  # process and host scope: nothing to await (issue 19)
        return pending.result()
    return await run_plan_async(pending_plan(pending))


def _cancel(self: Reservation) -> None:
    _settle(self, 0)


def _reservation_exit(self: Reservation, exc_type: Any, exc: Any, traceback: Any) -> bool:
    if exc_type is not None and self.pending:
        _cancel(self)
    return False


_renew.__doc__ = Permit.renew.__doc__
_renew_async.__doc__ = "``renew`` for coroutines: awaits Redis's reply in cluster scope."
_settle.__doc__ = Reservation.settle.__doc__
_settle_async.__doc__ = "``settle`` for coroutines: awaits Redis's reply in cluster scope."
_cancel.__doc__ = Reservation.cancel.__doc__


def install() -> None:
    """Puts the waiting methods on Permit and Reservation (see the module docstring)."""
    Permit.renew = _renew
    Permit.renew_async = _renew_async
    Reservation.settle = _settle
    Reservation.settle_async = _settle_async
    Reservation.cancel = _cancel
    Reservation.__exit__ = _reservation_exit
