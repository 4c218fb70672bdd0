"""Dify's 429 answers, with the headers sluice knows.

Dify answers a refused app (``AppInvokeQuotaExceededError``) with ``{"code":
"too_many_requests", "message": ..., "status": 429}`` and no Retry-After (``libs/external_api.py``),
and a provider's rate limit with ``{"code": "rate_limit_error", ...}``
(``controllers/web/error.py``). The builders here give the same bodies plus ``Retry-After`` and the
IETF ``RateLimit`` / ``RateLimit-Policy`` headers of the sluice decision behind the refusal (a
``sluice.Decision``, a Governor ``Admission``, a ``sluice.RateLimited`` or an
``AppInvokeQuotaExceededError`` raised by ``RateLimit.enter``).

Inside an SSE stream Dify turns every error into ``completion_request_error`` / 400; a limit that
trips mid-stream is written here as an ``error`` event with the 429 code and status, and its
``retry_after`` in the event (the headers are gone by then).
"""

from __future__ import annotations

import json
import math
from typing import Any, Dict, List, Optional, Tuple

Headers = List[Tuple[str, str]]

TOO_MANY_REQUESTS = "too_many_requests"
RATE_LIMIT_ERROR = "rate_limit_error"


def limit_headers(source: Any) -> Headers:
    """The 429 headers of `source` (Decision, Admission, RateLimited, an exception with
    ``headers`` and ``retry_after``, or None), always with a Retry-After in whole seconds (at
    least 1) when the source says when to retry."""
    headers: Headers = []
    retry_after: Optional[float] = None
    if source is None:
        return headers
    produce = getattr(source, "headers", None)
    if callable(produce):
        headers = list(produce())
    elif isinstance(produce, (list, tuple)):
        headers = [(str(n), str(v)) for n, v in produce]
    decision = getattr(source, "decision", None)
    for value in (getattr(source, "retry_after", None),
                  getattr(decision, "retry_after", None)):
        if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
            retry_after = float(value)
            break
    if retry_after is not None and not any(n.lower() == "retry-after" for n, _ in headers):
        headers.append(("Retry-After", str(max(1, math.ceil(retry_after)))))
    return headers


def _body(code: str, message: str) -> Dict[str, Any]:
    if not isinstance(message, str):
        raise TypeError(f"sluice.dify: message must be a str, got {type(message).__name__}")
    return {"code": code, "message": message, "status": 429}


def too_many_requests(message: str, source: Any = None) -> Tuple[Dict[str, Any], int, Headers]:
    """(body, 429, headers) for a refused app or request: Dify's ``too_many_requests`` shape."""
    return _body(TOO_MANY_REQUESTS, message), 429, limit_headers(source)


def rate_limit_error(message: str, source: Any = None) -> Tuple[Dict[str, Any], int, Headers]:
    """(body, 429, headers) for a provider's (or a model budget's) rate limit: Dify's
    ``rate_limit_error`` shape."""
    return _body(RATE_LIMIT_ERROR, message), 429, limit_headers(source)


def quota_exceeded_response(error: BaseException) -> Tuple[Dict[str, Any], int, Headers]:
    """The 429 for an AppInvokeQuotaExceededError raised by ``RateLimit.enter`` (Dify's class
    or sluice.dify's): its message, and the headers it carries."""
    return too_many_requests(str(error), error)


def stream_error_event(code: str, message: str, source: Any = None, *,
                       task_id: Optional[str] = None,
                       message_id: Optional[str] = None) -> Dict[str, Any]:
    """The ``error`` event (a dict, as Dify's stream converter yields) for a limit that trips
    inside a stream: status 429 and `code` (too_many_requests or rate_limit_error), with
    ``retry_after`` in seconds when `source` says it."""
    if code not in (TOO_MANY_REQUESTS, RATE_LIMIT_ERROR):
        raise ValueError(f"sluice.dify.stream_error_event: code must be {TOO_MANY_REQUESTS!r} or "
                         f"{RATE_LIMIT_ERROR!r}, got {code!r}")
    event: Dict[str, Any] = {"event": "error"}
    if task_id is not None:
        event["task_id"] = task_id
    if message_id is not None:
        event["message_id"] = message_id
    event.update(_body(code, message))
    for name, value in limit_headers(source):
        if name.lower() == "retry-after":
            event["retry_after"] = int(value)
    return event


def sse(event: Dict[str, Any]) -> str:
    """One SSE message (``data: <json>`` and a blank line) as Dify writes its stream."""
    return f"data: {json.dumps(event, ensure_ascii=False)}\n\n"
