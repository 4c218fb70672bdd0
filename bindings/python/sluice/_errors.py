"""The exceptions sluice raises. Every one is a ``sluice.Error``."""

from __future__ import annotations

from typing import TYPE_CHECKING, List, Optional, Tuple

if TYPE_CHECKING:  # pragma: no cover
    from ._core import Decision


class Error(Exception):
    """Base class of every sluice error."""


class InvalidArgument(Error, ValueError):
    """A bad option or argument; the message names the field. Also a ``ValueError``."""


class CapacityError(Error):
    """A bounded table is full: ``max_keys`` keys are all mid-window (or hold permits)."""


class FailedPrecondition(Error):
    """The object is not in a state that allows the call: e.g. a shared region made by another
    configuration or layout version, or a reservation already settled."""


class LeaseExpired(FailedPrecondition):
    """A permit's lease ran out and its slot was reclaimed before it was renewed."""


class NotFound(Error):
    """No such thing: e.g. removing a shared region that does not exist."""


class RateLimited(Error):
    """The request was refused. ``retry_after`` is in seconds; ``decision`` has the details.

    ``headers()`` gives the HTTP headers for a 429 response (Retry-After, RateLimit, ...).
    """

    def __init__(self, decision: "Decision", message: Optional[str] = None) -> None:
        self.decision = decision
        self.retry_after: float = decision.retry_after
        super().__init__(message or f"rate limited: retry after {self.retry_after:.3f}s")

    def headers(self, policy_name: str = "sluice") -> List[Tuple[str, str]]:
        return self.decision.headers(policy_name=policy_name)
