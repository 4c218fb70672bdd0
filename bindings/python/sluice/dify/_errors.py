"""Dify's model invoke errors in sluice's failure vocabulary.

Dify's plugin client rebuilds the provider's failure as one of its ``Invoke*Error`` classes
(``core/plugin/impl/base.py``) and drops the HTTP status and Retry-After, so a sluice classifier
for Dify must read the exception's class. The classes live in Dify (graphon or
``core.model_runtime.errors.invoke``), so they are recognised by name along the MRO: a subclass
of ``InvokeRateLimitError`` is a rate limit too, and no Dify import is needed.

``classify_invoke_error(exc)`` gives an ``InvokeFailure``: the sluice failure class (the names
``sluice.classify`` and ``Pick.complete(error=...)`` use), the cooldown Dify's load balancer
applies to the API key (60 s for a rate limit, 10 s for auth and connection errors, none
otherwise), whether Dify moves on to the next key, and ``outcome``, the keyword arguments of
``FallbackCall.next``. ``invoke_outcome`` is that outcome alone, the ``classify=`` function of
``FallbackPolicy.call`` / ``stream``.
"""

from __future__ import annotations

from typing import Any, Dict, NamedTuple, Optional


class InvokeFailure(NamedTuple):
    """How one Dify invoke error counts for sluice."""

    #: sluice's failure class: 'rate_limited', 'auth', 'connect', 'server' or 'client'.
    kind: str
    #: Seconds Dify's LBModelManager cools the key down for (0: no cooldown).
    cooldown: float
    #: Whether Dify's round robin tries the next key (else the error is raised at once).
    rotates: bool
    #: ``FallbackCall.next`` keyword arguments for this failure.
    outcome: Dict[str, Any]


#: Dify's cooldowns (core/model_manager.py, _round_robin_invoke).
RATE_LIMIT_COOLDOWN = 60.0
AUTH_COOLDOWN = 10.0
CONNECTION_COOLDOWN = 10.0

_BY_CLASS_NAME: Dict[str, InvokeFailure] = {
    "InvokeRateLimitError": InvokeFailure("rate_limited", RATE_LIMIT_COOLDOWN, True,
                                          {"status": 429}),
    "InvokeAuthorizationError": InvokeFailure("auth", AUTH_COOLDOWN, True, {"status": 401}),
    "InvokeConnectionError": InvokeFailure("connect", CONNECTION_COOLDOWN, True,
                                           {"transport": "connect"}),
    "InvokeServerUnavailableError": InvokeFailure("server", 0.0, False, {"status": 503}),
    "InvokeBadRequestError": InvokeFailure("client", 0.0, False, {"status": 400}),
}


def classify_invoke_error(exc: BaseException) -> Optional[InvokeFailure]:
    """The InvokeFailure of a Dify invoke error (the first of its classes, along the MRO, that
    Dify names), or None for any other exception (not a provider failure: let it propagate)."""
    if not isinstance(exc, BaseException):
        raise TypeError(f"sluice.dify.classify_invoke_error: exc must be an exception, got "
                        f"{type(exc).__name__}")
    for cls in type(exc).__mro__:
        failure = _BY_CLASS_NAME.get(cls.__name__)
        if failure is not None:
            return failure._replace(outcome=dict(failure.outcome))
    return None


def invoke_outcome(exc: BaseException) -> Optional[Dict[str, Any]]:
    """``FallbackPolicy.call(fn, classify=invoke_outcome)``: the outcome of a Dify invoke error,
    else sluice's own reading of the exception (``sluice.outcome_of``: HTTP clients' errors)."""
    failure = classify_invoke_error(exc)
    if failure is not None:
        return failure.outcome
    from .._fallback import outcome_of
    return outcome_of(exc)
