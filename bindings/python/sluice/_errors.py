"""The exceptions sluice raises. Every one is a ``sluice.Error``.

Which class a native failure raises is the one status table of sluice
(include/sluice/internal/status_table.h, read here through ``_core.status_table()``): the C++
extension's translator and the fallback helpers both look the class up there, by absl code.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Dict, List, Optional, Tuple, Type

if TYPE_CHECKING:  # pragma: no cover
    from ._core import Decision


class Error(Exception):
    """Base class of every sluice error."""


class InvalidArgument(Error, ValueError):
    """A bad option or argument; the message names the field. Also a ``ValueError``."""


class CapacityError(Error):
    """A bounded table is full: ``max_keys`` keys are all mid-window (or hold permits); or
    /dev/shm has no room for a new shared region (the message gives the bytes needed and free;
    see docs/deployment.md)."""


class FailedPrecondition(Error):
    """The object is not in a state that allows the call: e.g. a shared region made by another
    configuration or layout version, a reservation already settled, or a Redis deployment sluice
    cannot use (a replica, a Sentinel, a Redis Cluster node answering MOVED)."""


class LeaseExpired(FailedPrecondition):
    """A permit's lease ran out and its slot was reclaimed before it was renewed."""


class PermissionDenied(Error):
    """Redis refused the credentials (a wrong or missing password) or an ACL denies sluice a
    command or its keys. A configuration error: no failure mode hides it."""


class NotFound(Error):
    """No such thing: e.g. removing a shared region that does not exist."""


class AlreadyExists(Error):
    """The thing to create is there already."""


class RateLimited(Error):
    """The request was refused. ``retry_after`` is in seconds; ``decision`` has the details.

    ``headers()`` gives the HTTP headers for a 429 response (Retry-After, RateLimit, ...).
    """

    def __init__(self, decision: "Decision", message: Optional[str] = None) -> None:
        retry_after = getattr(decision, "retry_after", None)
        if isinstance(retry_after, bool) or not isinstance(retry_after, (int, float)):
            raise TypeError(f"RateLimited needs a sluice.Decision, got {type(decision).__name__}")
        self.decision = decision
        self.retry_after: float = retry_after
        super().__init__(message or f"rate limited: retry after {self.retry_after:.3f}s")

    def headers(self, policy_name: str = "sluice") -> List[Tuple[str, str]]:
        return self.decision.headers(policy_name=policy_name)


class Unavailable(Error):
    """Nothing could serve the call: every fallback target failed, is behind an open circuit
    breaker or inside a provider's Retry-After window (or every balancer endpoint is cooling
    down). ``retry_after`` (seconds, 0 if unknown) says when a target is usable again."""

    def __init__(self, message: str = "", retry_after: float = 0.0) -> None:
        super().__init__(message)
        self.retry_after: float = retry_after


class DeadlineExceeded(Error):
    """A fallback call's deadline passed before any target answered."""


class StreamBroken(Error):
    """(absl Aborted.) A streamed answer broke after its first byte had reached the client. It is not retried
    or replayed elsewhere: the client would receive two answers spliced together."""


class AttemptFailed(Error):
    """Raise this from a function run by ``FallbackPolicy.call`` to report how an attempt
    failed when no exception of the HTTP client says it: ``status`` (0: no response),
    ``transport`` (None, 'connect', 'timeout' or 'reset'), the provider's ``error_body`` (bytes
    or str) and its ``retry_after`` (seconds)."""

    def __init__(
        self,
        status: int = 0,
        *,
        transport: Optional[str] = None,
        error_body: "bytes | str" = b"",
        retry_after: float = 0.0,
        message: str = "",
    ) -> None:
        super().__init__(message or f"attempt failed: status {status}, transport {transport}")
        self.status = status
        self.transport = transport
        self.error_body = error_body.encode() if isinstance(error_body, str) else error_body
        self.retry_after = retry_after


def _classes_by_code() -> Dict[int, Type[Error]]:
    from . import _core

    here = globals()
    return {code: here[python] for code, _name, _c_code, _c_name, python in _core.status_table()
            if python is not None}


_BY_CODE: Dict[int, Type[Error]] = {}


def error_for(code: int) -> Type[Error]:
    """The exception class of an absl status code, as the status table says (``Error`` for a
    code sluice never returns, as C++ maps those to Internal)."""
    if not _BY_CODE:
        _BY_CODE.update(_classes_by_code())
    return _BY_CODE.get(code, Error)
