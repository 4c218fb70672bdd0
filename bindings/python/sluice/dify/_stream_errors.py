"""Limits that trip inside a stream, reported as 429s.

Dify converts an error raised inside an SSE stream with
``AppGenerateResponseConverter._error_to_stream_response(e)``
(``core/app/apps/base_app_generate_response_converter.py``), a classmethod returning the error
event's data: every ``InvokeError`` becomes ``completion_request_error`` / 400, every
``ValueError`` ``invalid_param`` / 400. ``install(model_calls=...)`` wraps it so that a sluice
refusal (a ``sluice.RateLimited``, or ``ModelRateLimited`` inside a Dify) gives ``rate_limit_error``
(a model call) or ``too_many_requests`` with status 429 and ``retry_after``; any other error goes
to Dify's own conversion. The web layer (``GovernorMiddleware``) ends an ``text/event-stream``
body that raises a refusal with the same event.
"""

from __future__ import annotations

from typing import Any, Dict, Optional

from .._errors import RateLimited
from ._responses import RATE_LIMIT_ERROR, TOO_MANY_REQUESTS, sse, stream_error_event

REFUSAL_MESSAGE = "Too many requests. Please try again later."


def is_refusal(error: BaseException) -> bool:
    """Whether `error` is a sluice refusal (not a provider's own 429)."""
    return isinstance(error, RateLimited) or getattr(error, "sluice_refusal", False) is True


def stream_error_data(error: BaseException) -> Optional[Dict[str, Any]]:
    """The error event's data (code, message, status 429, retry_after) for a sluice refusal, or
    None for any other error."""
    if not is_refusal(error):
        return None
    code = RATE_LIMIT_ERROR if getattr(error, "dify_code", None) == RATE_LIMIT_ERROR else \
        TOO_MANY_REQUESTS
    message = getattr(error, "description", None)
    event = stream_error_event(code, message if isinstance(message, str) else REFUSAL_MESSAGE,
                               error)
    del event["event"]
    return event


def stream_refusal_event(error: BaseException) -> bytes:
    """The whole SSE ``error`` event for a refusal raised inside a stream."""
    data = stream_error_data(error) or {"code": TOO_MANY_REQUESTS, "message": REFUSAL_MESSAGE,
                                        "status": 429}
    return sse({"event": "error", **data}).encode()


def converter_method(original: Any) -> classmethod:
    """A replacement for Dify's ``_error_to_stream_response`` classmethod (`original`, as found
    in the class's ``__dict__``): refusals become 429 data, the rest is Dify's."""
    function = original.__func__ if isinstance(original, classmethod) else original

    def _error_to_stream_response(cls: Any, e: Exception) -> Dict[str, Any]:
        data = stream_error_data(e)
        if data is not None:
            return data
        return function(cls, e)

    _error_to_stream_response.__sluice_original__ = original  # type: ignore[attr-defined]
    return classmethod(_error_to_stream_response)
