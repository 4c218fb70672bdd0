"""Dify's per-app concurrency cap, atomic and exact on sluice.

The interface is Dify's (``api/core/app/features/rate_limiting/rate_limit.py``): ``RateLimit
(client_id, max_active_requests)`` (one instance per client id per process; 0 = no cap) with
``enter(request_id=None) -> request_id``, ``exit(request_id)``, ``generate(answer, request_id)``
and ``disabled()``; ``RateLimitGenerator``; ``rate_limit_context(rate_limit, request_id)``.

What differs from Dify's Redis hash (HLEN then HSET):

* the check and the take are one atomic step of a sluice ConcurrencyLimiter (a Governor rule,
  see ``_policy``): cap 5 with 40 simultaneous entrants admits 5, where HLEN/HSET admits 7-15
  (Dify #39177);
* every slot is a lease (the rule's ``lease``), so a killed worker's slots come back by
  themselves; no ``flush_cache`` sweep;
* a request id entered again while it holds a slot counts once, and its slot is given back by
  the last ``exit`` (Dify #35895: a streaming workflow entered twice and exited once before its
  stream ran);
* ``generate`` gives a blocking answer's slot back at once and holds a stream's until it is
  exhausted, raises or is closed (the client went away; Dify #11540).

Slots live in the process that entered them: ``exit`` in another process is a no-op there (the
slot comes back on its own process's ``exit`` or at the end of its lease). A streaming workflow
run executed in a Celery worker is the exception: the API process hands its request's slot over
to the run, which holds it until it ends (``_celery_runs``).
"""

from __future__ import annotations

import contextvars
import ctypes
import os
import threading
import uuid
from collections import OrderedDict
from collections.abc import Mapping
from contextlib import contextmanager
from typing import Any, Callable, Dict, Iterator, List, Optional, Union

from .._errors import InvalidArgument
from ._args import checked_count, checked_id
from ._policy import MATCH_ATTRIBUTE, MATCH_VALUE, RULE

# A refusal from the host region's per-call cap can be one that was not needed: two callers
# racing for the last slot may both give it back (sluice/concurrency_limiter.h). A refusal that
# still saw room (remaining > 0) is such a race, so the call is tried again, a bounded number of
# times; a real refusal (the app is full) is final at once.
_RACE_RETRIES = 8
# How long an admit waits, at a time, for an over-cap admission of its process to finish (it
# waits again while one is under way; a single admit call, so this only bounds each wait).
_OVER_WAIT = 1.0


def _rule_key(client_id: str) -> str:
    """The rule's key for an app: the Governor escapes '%' and '/' in attribute values."""
    return client_id.replace("%", "%25").replace("/", "%2F")


class AppConcurrency:
    """The per-app in-flight counts every RateLimit of this process shares: a Governor and the
    name of its app concurrency rule (``_policy.RULE`` unless the policy names it otherwise).
    `ceiling` (optional) is the rule's concurrency, so that a cap above it is refused here with
    its name; thread-safe."""

    def __init__(self, governor: Any, *, rule: str = RULE, ceiling: Optional[int] = None,
                 handover: Any = None) -> None:
        if rule not in governor.rule_names:
            raise InvalidArgument(f"sluice.dify.AppConcurrency: rule must name a rule of the "
                                  f"governor's policy ({', '.join(governor.rule_names) or 'none'})"
                                  f", got {rule!r}")
        self.governor = governor
        self.rule = rule
        self.ceiling = ceiling
        #: The marks by which a request's slot is handed over to its Celery run (a
        #: sluice.ConcurrencyLimiter of cap 1 in the rule's scope, see ``_celery_runs``); None:
        #: no handover (process scope, or a Governor given without one).
        self.handover = handover
        self._caps: Dict[str, Optional[int]] = {}
        self._lock = threading.Lock()
        # Odd while admit_over has lifted a key's cap to the rule's ceiling; an admit that ran
        # meanwhile may have been judged against the ceiling, so it is undone and tried again.
        self._over_epoch = 0
        self._over_done = threading.Condition(self._lock)

    def admit(self, client_id: str, cap: int) -> Any:
        """An Admission holding one of `client_id`'s `cap` slots; falsy when the app is full."""
        if self.ceiling is not None and cap > self.ceiling:
            raise InvalidArgument(f"sluice.dify.RateLimit: max_active_requests must be at most "
                                  f"the rule's ceiling {self.ceiling}, got {cap}")
        key = _rule_key(client_id)
        attributes = {MATCH_ATTRIBUTE: MATCH_VALUE, "app": client_id}
        admission = None
        for _ in range(_RACE_RETRIES):
            with self._lock:
                while self._over_epoch % 2:
                    self._over_done.wait(_OVER_WAIT)
                epoch = self._over_epoch
                if self._caps.get(key) != cap:
                    self.governor.set_key_limits(self.rule, key, concurrency=cap)
                    self._caps[key] = cap
            admission = self.governor.admit(attributes)
            with self._lock:
                lifted = self._over_epoch != epoch
            if lifted:  # judged, perhaps, against the ceiling: undo, try again
                admission.release()
                admission = None
                continue
            if admission or admission.rule != self.rule or admission.decision.remaining <= 0:
                return admission
        return admission

    def admit_over(self, client_id: str) -> Any:
        """An Admission for `client_id` judged against the rule's ceiling, not the app's cap:
        for a request that holds one of the app's slots already and hands it over (its Celery
        run takes this one, then the request gives its own back), so it admits nothing new."""
        key = _rule_key(client_id)
        attributes = {MATCH_ATTRIBUTE: MATCH_VALUE, "app": client_id}
        with self._lock:
            while self._over_epoch % 2:
                self._over_done.wait(_OVER_WAIT)
            self._over_epoch += 1
            previous = self._caps.get(key)
            try:
                self.governor.clear_key_limits(self.rule, key)
            except BaseException:
                self._over_epoch += 1
                self._over_done.notify_all()
                raise
            self._caps[key] = None
        try:
            return self.governor.admit(attributes)
        finally:
            with self._lock:
                try:
                    if previous is not None:
                        self.governor.set_key_limits(self.rule, key, concurrency=previous)
                        self._caps[key] = previous
                finally:
                    self._over_epoch += 1
                    self._over_done.notify_all()


_BACKEND_LOCK = threading.Lock()
_backend: Optional[AppConcurrency] = None


def configure(backend: Optional[AppConcurrency]) -> Optional[AppConcurrency]:
    """Makes `backend` the one every RateLimit uses (None: back to the default, a process-scope
    Governor made on first use); returns the previous one."""
    global _backend
    with _BACKEND_LOCK:
        previous, _backend = _backend, backend
    return previous


def backend() -> AppConcurrency:
    """The AppConcurrency in use; without ``configure`` (or ``sluice.dify.install``) a
    process-scope one (each worker its own cap: fine for one worker and for tests)."""
    global _backend
    with _BACKEND_LOCK:
        if _backend is None:
            from .. import Governor
            from ._policy import DEFAULT_CEILING, policy
            _backend = AppConcurrency(Governor(policy("process")), ceiling=DEFAULT_CEILING)
        return _backend


class AppInvokeQuotaExceededError(ValueError):
    """An app has ``max_active_requests`` requests in flight already (Dify's class of the same
    name, a ValueError, which Dify answers with a 429 ``too_many_requests``). Inside a Dify,
    ``RateLimit.enter`` raises Dify's own class instead, with the same attributes set:
    ``client_id``, ``max_active_requests``, ``retry_after`` (seconds) and ``headers``, the 429's
    ``Retry-After`` / ``RateLimit`` headers as (name, value) pairs."""

    description = "App Invoke Quota Exceeded"


def quota_message(client_id: str, max_active_requests: int) -> str:
    """Dify's message for a refused ``enter``."""
    return ("Too many requests. Please try again later. The current maximum concurrent requests "
            f"allowed for {client_id} is {max_active_requests}.")


def _quota_error_class() -> type:
    """Dify's AppInvokeQuotaExceededError when Dify is loaded (its handlers map that class to
    the 429), else this module's."""
    from ._install import dify_quota_error_class
    return dify_quota_error_class() or AppInvokeQuotaExceededError


def quota_exceeded(client_id: str, max_active_requests: int, admission: Any) -> BaseException:
    """The exception for a refused ``enter``, carrying the refusal's headers."""
    error = _quota_error_class()(quota_message(client_id, max_active_requests))
    decision = admission.decision if admission is not None else None
    for name, value in (("client_id", client_id), ("max_active_requests", max_active_requests),
                        ("retry_after", decision.retry_after if decision is not None else 1.0),
                        ("headers", admission.headers() if admission is not None else [])):
        try:
            setattr(error, name, value)
        except AttributeError:  # a class with __slots__: the message still says it all
            pass
    return error


class _Held:
    """A request's slot: the admission (None once handed over to the request's Celery run), how
    many enters it stands for, and, for a request whose run executes in Celery, its API mark
    (a handover permit) and the key of its run's mark."""

    __slots__ = ("admission", "depth", "mark", "run_key")

    def __init__(self, admission: Any) -> None:
        self.admission = admission
        self.depth = 1
        self.mark: Any = None
        self.run_key: Optional[str] = None

    def give_back(self) -> None:
        """The last exit: the API mark first (so a run that finds it knows the slot was still
        held), then the slot, if the run has not taken it over."""
        mark, self.mark = self.mark, None
        admission, self.admission = self.admission, None
        try:
            if mark is not None:
                mark.release()
        finally:
            if admission is not None:
                admission.release()


#: The request a ``rate_limit_context`` block holds, (RateLimit, request id), for
#: ``_celery_runs`` to link the Celery run prepared inside it to the request.
current_request: "contextvars.ContextVar[Optional[tuple]]" = contextvars.ContextVar(
    "sluice_dify_current_request", default=None)


# Slots inherited across fork() belong to the parent: the child must neither release them nor
# let them be collected (collection releases). They are moved here, and this list is given a
# reference nothing drops, so not even interpreter shutdown collects them.
_INHERITED: List[Any] = []
ctypes.pythonapi.Py_IncRef(ctypes.py_object(_INHERITED))


class RateLimit:
    """Dify's ``RateLimit``: at most ``max_active_requests`` requests of one app in flight (0:
    no cap), counted host- or cluster-wide by the configured AppConcurrency. One instance per
    `client_id` per process; constructing it again sets the cap (a change applies to the next
    ``enter``; requests in flight keep their slots)."""

    _UNLIMITED_REQUEST_ID = "unlimited_request_id"
    _MAX_INSTANCES = 65536
    _instances: "OrderedDict[str, RateLimit]" = OrderedDict()
    _instances_lock = threading.Lock()

    def __new__(cls, client_id: str, max_active_requests: int) -> "RateLimit":
        client_id = checked_id("RateLimit", "client_id", client_id)
        checked_count("RateLimit", "max_active_requests", max_active_requests, 0)
        with cls._instances_lock:
            instance = cls._instances.get(client_id)
            if instance is None:
                instance = super().__new__(cls)
                instance.client_id = client_id
                instance._held = {}
                instance._lock = threading.Lock()
                cls._instances[client_id] = instance
                if len(cls._instances) > cls._MAX_INSTANCES:  # Dify's dict grows forever
                    cls._instances.popitem(last=False)
            else:
                cls._instances.move_to_end(client_id)
        return instance

    def __init__(self, client_id: str, max_active_requests: int) -> None:
        self.client_id: str
        self._held: Dict[str, _Held]
        self.max_active_requests: int = max_active_requests

    def disabled(self) -> bool:
        """True when the app has no cap (max_active_requests 0)."""
        return self.max_active_requests <= 0

    @staticmethod
    def gen_request_key() -> str:
        """A new request id."""
        return str(uuid.uuid4())

    def enter(self, request_id: Optional[str] = None) -> str:
        """Takes a slot for `request_id` (a new id when None or empty) and returns the id; a
        request id that holds a slot already counts once. Raises AppInvokeQuotaExceededError
        (Dify's class inside a Dify) when the app has max_active_requests in flight."""
        if self.disabled():
            return self._UNLIMITED_REQUEST_ID
        if request_id is None or request_id == "":
            request_id = self.gen_request_key()
        checked_id("RateLimit", "request_id", request_id)
        with self._lock:
            held = self._held.get(request_id)
            if held is not None:
                held.depth += 1
                return request_id
        cap = self.max_active_requests
        admission = backend().admit(self.client_id, cap)
        if not admission:
            raise quota_exceeded(self.client_id, cap, admission)
        with self._lock:
            held = self._held.get(request_id)
            if held is None:
                self._held[request_id] = _Held(admission)
                return request_id
            held.depth += 1  # the same id entered meanwhile from another greenlet
        admission.release()
        return request_id

    def exit(self, request_id: str) -> None:
        """Gives `request_id`'s slot back once every ``enter`` of it has exited; an id that
        holds no slot here (unlimited, unknown or already gone) is ignored."""
        if not isinstance(request_id, str) or request_id == self._UNLIMITED_REQUEST_ID:
            return
        with self._lock:
            held = self._held.get(request_id)
            if held is None:
                return
            held.depth -= 1
            if held.depth > 0:
                return
            del self._held[request_id]
        held.give_back()

    def take_over_check(self, request_id: str) -> None:
        """For a request whose run executes in Celery: once the run holds a slot of its own
        (its mark is taken), gives the request's slot back, so the request counts once."""
        with self._lock:
            held = self._held.get(request_id)
            if held is None or held.run_key is None or held.admission is None:
                return
            run_key = held.run_key
        handover = backend().handover
        if handover is None or handover.in_flight(run_key) < 1:
            return  # not yet (or Redis did not answer: keep counting it twice, never zero)
        with self._lock:
            if self._held.get(request_id) is not held or held.admission is None:
                return
            handed = _Held(held.admission)
            handed.mark, held.mark, held.admission = held.mark, None, None
        handed.give_back()  # the mark first: a later delivery of the run must not take over

    def active_requests(self) -> int:
        """Requests of this app holding a slot in this process."""
        with self._lock:
            return len(self._held)

    def generate(self, generator: Union[Mapping, Iterator, Callable[[], Iterator]],
                 request_id: str) -> Any:
        """A blocking answer (a Mapping) exits at once and is returned; a stream (an iterator, or
        a callable that makes one) is returned as a RateLimitGenerator that exits when it ends."""
        if isinstance(generator, Mapping):
            self.exit(request_id)
            return generator
        return RateLimitGenerator(self, generator, request_id)


class RateLimitGenerator:
    """A streamed answer that holds its request's slot: it exits once, when the stream is
    exhausted, raises, or is closed (the WSGI server closes it when the client goes away), or at
    the latest when it is collected."""

    def __init__(self, rate_limit: RateLimit, generator: Union[Iterator, Callable[[], Iterator]],
                 request_id: str) -> None:
        self.rate_limit = rate_limit
        self.request_id = request_id
        self.closed = False
        try:
            self.generator = generator() if callable(generator) else generator
        except BaseException:
            self.close()
            raise

    def __iter__(self) -> "RateLimitGenerator":
        return self

    def __next__(self) -> Any:
        if self.closed:
            raise StopIteration
        try:
            item = next(self.generator)
        except StopIteration:
            self.close()
            raise
        except BaseException:
            self.close()
            raise
        try:
            self.rate_limit.take_over_check(self.request_id)
        except Exception:  # the mark could not be read: keep the slot (counted twice, not zero)
            pass
        return item

    def close(self) -> None:
        """Exits the request (once) and closes the wrapped generator."""
        if self.closed:
            return
        self.closed = True
        try:
            self.rate_limit.exit(self.request_id)
        finally:
            close = getattr(getattr(self, "generator", None), "close", None)
            if close is not None:
                close()

    def __del__(self) -> None:
        if not getattr(self, "closed", True):
            try:
                self.rate_limit.exit(self.request_id)
            except Exception:  # nothing may escape a finalizer
                pass


@contextmanager
def rate_limit_context(rate_limit: RateLimit, request_id: Optional[str]) -> Iterator[str]:
    """Holds a slot of `rate_limit` for the block (entered on the way in, exited on the way
    out, also when the block raises); yields the request id."""
    request_id = rate_limit.enter(request_id)
    token = current_request.set((rate_limit, request_id))
    try:
        yield request_id
    finally:
        current_request.reset(token)
        rate_limit.exit(request_id)


def _forget_inherited_slots() -> None:
    """After fork(), in the child: the parent's slots stay the parent's."""
    for instance in list(RateLimit._instances.values()):
        instance._lock = threading.Lock()
        if instance._held:
            _INHERITED.append(instance._held)
            instance._held = {}
    RateLimit._instances_lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_inherited_slots)
