"""Route-level rules in front of any WSGI or Flask app, with Dify's 429 answer.

``GovernorMiddleware(app, governor)`` wraps a WSGI app; ``FlaskGovernor(app, governor)`` (or
``init_app``) does the same for a Flask app from inside it. Each request is admitted by the
Governor (``Governor.admit``: it runs cluster-scope waits off gevent's hub) with:

* ``route``: the path (``PATH_INFO``);
* ``header.<name>``: the request's headers (at most ``MAX_HEADERS`` of them; a value longer than
  ``MAX_VALUE_CHARS`` is replaced by its SHA-256, so two long values never share a key; a value
  that is not UTF-8 is read with U+FFFD for the bad bytes);
* ``api_key``: the ``Authorization: Bearer`` token (Dify's service API keys, ``app-...``);
* ``ip``: ``REMOTE_ADDR``, or with ``trusted_proxies=N`` the N-th address from the right of
  ``X-Forwarded-For`` (what the N proxies in front of the app appended; anything to its left was
  written by the client and is ignored: a spoofed X-Forwarded-For does not change the ip);
* what ``attributes(environ)`` returns (``tenant``, ``app``, ``end_user``, ...), when given.

A refusal answers 429 with Dify's ``too_many_requests`` body (``libs/external_api.py``'s shape)
and the binding rule's ``Retry-After`` / ``RateLimit`` headers; an admitted response carries the
``RateLimit`` headers too. The admission (its concurrency permits) is held until the response
body has been sent or closed: the WSGI iterable is wrapped and the permits are released by its
``close()``, which the server calls at the end of the body and when the client goes away. A
stream that a sluice limit refuses mid-way (``sluice.RateLimited`` or ``ModelRateLimited`` raised
while iterating a ``text/event-stream`` body) ends with an SSE ``error`` event with status 429 instead of a broken
connection.

``metrics_path`` (default ``/metrics``; None turns it off) serves ``governor.metrics_text()`` in
the Prometheus text format, outside the rules.

The attribute names are the Governor's (docs/governor.md); the WSGI contract is PEP 3333's.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
from typing import Any, Callable, Dict, Iterable, List, Mapping, Optional, Tuple

from .._waiting import sleep
from ._responses import too_many_requests
from ._stream_errors import REFUSAL_MESSAGE, is_refusal, stream_refusal_event

#: Headers read per request (the rest are ignored: a flood of headers costs nothing more).
MAX_HEADERS = 64
#: Longest header value kept as is; longer ones are replaced by ``sha256:<hex>``.
MAX_VALUE_CHARS = 1024
PROMETHEUS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

Attributes = Callable[[Mapping[str, Any]], Optional[Mapping[str, str]]]


def _text(raw: str) -> str:
    """A WSGI header value (latin-1 code points standing for bytes, PEP 3333) as text: UTF-8
    where it is, U+FFFD for bytes that are not; over-long values as their SHA-256."""
    try:
        data = raw.encode("latin-1")
    except UnicodeEncodeError:  # a server that already decoded it
        data = raw.encode("utf-8", "replace")
    if len(data) > MAX_VALUE_CHARS:
        return "sha256:" + hashlib.sha256(data).hexdigest()
    return data.decode("utf-8", "replace")


def _checked_ip(value: str) -> Optional[str]:
    try:
        return str(ipaddress.ip_address(value.strip()))
    except ValueError:
        return None


class RequestReader:
    """What the Governor is told about one WSGI request (see the module docstring)."""

    def __init__(self, *, trusted_proxies: int = 0, attributes: Optional[Attributes] = None
                 ) -> None:
        if isinstance(trusted_proxies, bool) or not isinstance(trusted_proxies, int) or \
                trusted_proxies < 0:
            raise ValueError(f"sluice.dify.GovernorMiddleware: trusted_proxies must be an int >= 0,"
                             f" got {trusted_proxies!r}")
        if attributes is not None and not callable(attributes):
            raise TypeError(f"sluice.dify.GovernorMiddleware: attributes must be callable or None,"
                            f" got {type(attributes).__name__}")
        self.trusted_proxies = trusted_proxies
        self.attributes = attributes

    def headers(self, environ: Mapping[str, Any]) -> Dict[str, str]:
        """The request's headers by lower-case name (bounded; Authorization left out)."""
        headers: Dict[str, str] = {}
        for key, value in environ.items():
            if len(headers) >= MAX_HEADERS:
                break
            if not isinstance(key, str) or not isinstance(value, str):
                continue
            if key.startswith("HTTP_"):
                name = key[5:]
            elif key in ("CONTENT_TYPE", "CONTENT_LENGTH"):
                name = key
            else:
                continue
            if name == "AUTHORIZATION":
                continue  # a secret: read as api_key, never matched or logged as a header
            headers[name.lower().replace("_", "-")] = _text(value)
        return headers

    def ip(self, environ: Mapping[str, Any]) -> Optional[str]:
        """The client's address (None when the server gave no valid one)."""
        remote = environ.get("REMOTE_ADDR")
        remote = _checked_ip(remote) if isinstance(remote, str) else None
        forwarded = environ.get("HTTP_X_FORWARDED_FOR")
        if self.trusted_proxies and isinstance(forwarded, str):
            hops = [hop for hop in forwarded.split(",") if hop.strip()]
            if len(hops) >= self.trusted_proxies:
                return _checked_ip(hops[-self.trusted_proxies]) or remote
        return remote

    @staticmethod
    def api_key(environ: Mapping[str, Any]) -> Optional[str]:
        """The ``Authorization: Bearer`` token, or None."""
        value = environ.get("HTTP_AUTHORIZATION")
        if not isinstance(value, str):
            return None
        scheme, _, token = value.strip().partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            return None
        return _text(token)

    def read(self, environ: Mapping[str, Any]
             ) -> Tuple[Dict[str, str], Dict[str, str], Optional[str]]:
        """(attributes, headers, ip) for ``Governor.admit``."""
        path = environ.get("PATH_INFO")
        attributes: Dict[str, str] = {"route": _text(path) if isinstance(path, str) else "/"}
        api_key = self.api_key(environ)
        if api_key is not None:
            attributes["api_key"] = api_key
        if self.attributes is not None:
            extra = self.attributes(environ)
            if extra is not None:
                if not isinstance(extra, Mapping):
                    raise TypeError(f"sluice.dify.GovernorMiddleware: attributes() must return a "
                                    f"mapping of str to str or None, got {type(extra).__name__}")
                for name, value in extra.items():
                    if isinstance(name, str) and isinstance(value, str):
                        attributes[name] = value
        return attributes, self.headers(environ), self.ip(environ)


def refusal(admission: Any, message: str = REFUSAL_MESSAGE
            ) -> Tuple[str, List[Tuple[str, str]], bytes]:
    """(status line, headers, body) of the 429 for a refused admission."""
    body, _, headers = too_many_requests(message, admission)
    data = json.dumps(body).encode()
    return ("429 TOO MANY REQUESTS",
            [("Content-Type", "application/json"), ("Content-Length", str(len(data)))] + headers,
            data)


def _merge_headers(response_headers: List[Tuple[str, str]], extra: List[Tuple[str, str]]
                   ) -> List[Tuple[str, str]]:
    """The app's headers plus the admission's, without overriding what the app set."""
    present = {name.lower() for name, _ in response_headers}
    return list(response_headers) + [(n, v) for n, v in extra if n.lower() not in present]


class HeldResponse:
    """A WSGI response iterable that holds its request's admission until ``close()`` (the server
    calls it when the body is sent or the client is gone), then closes the app's iterable and
    releases. A sluice refusal raised by an SSE body ends it with a 429 ``error`` event."""

    def __init__(self, body: Iterable[bytes], release: Callable[[], None],
                 is_event_stream: Callable[[], bool]) -> None:
        self._body = body
        self._iterator: Optional[Any] = None
        self._release: Optional[Callable[[], None]] = release
        self._is_event_stream = is_event_stream
        self._ended = False

    def __iter__(self) -> "HeldResponse":
        return self

    def __next__(self) -> bytes:
        if self._ended:
            raise StopIteration
        if self._iterator is None:
            self._iterator = iter(self._body)
        try:
            return next(self._iterator)
        except Exception as error:
            if not (is_refusal(error) and self._is_event_stream()):
                raise
            self._ended = True
            return stream_refusal_event(error)

    def close(self) -> None:
        """Closes the app's iterable and releases the admission (once)."""
        release, self._release = self._release, None
        if release is None:
            return
        try:
            close = getattr(self._body, "close", None)
            if close is not None:
                close()
        finally:
            release()

    def __del__(self) -> None:  # a server that never calls close(): the permits still go back
        release, self._release = getattr(self, "_release", None), None
        if release is not None:
            try:
                release()
            except Exception:  # nothing may escape a finalizer
                pass


class GovernorMiddleware:
    """WSGI middleware: every request admitted by `governor` (see the module docstring).

    `trusted_proxies`: proxies in front of the app that append to X-Forwarded-For (0: use
    REMOTE_ADDR only). `attributes(environ)`: more attributes (tenant, app, ...) or None.
    `metrics_path`: where the Prometheus text is served (None: nowhere). `exempt`: paths never
    admitted (health checks). Thread- and greenlet-safe: it keeps no per-request state."""

    def __init__(self, app: Callable[..., Any], governor: Any, *, trusted_proxies: int = 0,
                 attributes: Optional[Attributes] = None,
                 metrics_path: Optional[str] = "/metrics",
                 exempt: Iterable[str] = ()) -> None:
        from .. import Governor
        if not callable(app):
            raise TypeError(f"sluice.dify.GovernorMiddleware: app must be a WSGI callable, got "
                            f"{type(app).__name__}")
        if not isinstance(governor, Governor):
            raise TypeError(f"sluice.dify.GovernorMiddleware: governor must be a sluice.Governor,"
                            f" got {type(governor).__name__}")
        if metrics_path is not None and (not isinstance(metrics_path, str) or
                                         not metrics_path.startswith("/")):
            raise ValueError(f"sluice.dify.GovernorMiddleware: metrics_path must be a path "
                             f"starting with '/' or None, got {metrics_path!r}")
        self.app = app
        self.governor = governor
        self.reader = RequestReader(trusted_proxies=trusted_proxies, attributes=attributes)
        self.metrics_path = metrics_path
        self.exempt = frozenset(exempt)

    def metrics(self, start_response: Callable[..., Any]) -> List[bytes]:
        """The /metrics answer: the Governor's Prometheus text."""
        data = self.governor.metrics_text().encode()
        start_response("200 OK", [("Content-Type", PROMETHEUS_CONTENT_TYPE),
                                  ("Content-Length", str(len(data)))])
        return [data]

    def __call__(self, environ: Dict[str, Any], start_response: Callable[..., Any]) -> Any:
        path = environ.get("PATH_INFO")
        if self.metrics_path is not None and path == self.metrics_path:
            return self.metrics(start_response)
        if path in self.exempt:
            return self.app(environ, start_response)
        attributes, headers, ip = self.reader.read(environ)
        admission = self.governor.admit(attributes, headers=headers, ip=ip)
        if not admission:
            admission.release()
            status, response_headers, data = refusal(admission)
            start_response(status, response_headers)
            return [data]
        try:
            if admission.delay > 0:
                sleep(admission.delay)
            limit_headers = admission.headers()
            content_type: List[str] = []

            def start(status: str, response_headers: List[Tuple[str, str]],
                      exc_info: Any = None) -> Any:
                content_type[:] = [v for n, v in response_headers
                                   if n.lower() == "content-type"]
                return start_response(status, _merge_headers(response_headers, limit_headers),
                                      exc_info)

            body = self.app(environ, start)
        except BaseException:
            admission.release()
            raise
        return HeldResponse(body, admission.release,
                            lambda: bool(content_type) and
                            content_type[0].lower().startswith("text/event-stream"))


class FlaskGovernor:
    """The Flask extension: ``FlaskGovernor(app, governor, ...)`` or ``ext.init_app(app)``. It
    installs ``GovernorMiddleware`` on ``app.wsgi_app`` (so streamed responses hold their
    admission until the server closes them, as with any WSGI app) with the same options, and
    keeps itself in ``app.extensions["sluice"]``."""

    def __init__(self, app: Any = None, governor: Any = None, **options: Any) -> None:
        self.governor = governor
        self.options = options
        self.middleware: Optional[GovernorMiddleware] = None
        if app is not None:
            self.init_app(app)

    def init_app(self, app: Any) -> None:
        """Puts the middleware in front of `app` (a Flask app)."""
        if not hasattr(app, "wsgi_app"):
            raise TypeError(f"sluice.dify.FlaskGovernor: app must be a Flask app, got "
                            f"{type(app).__name__}")
        self.middleware = GovernorMiddleware(app.wsgi_app, self.governor, **self.options)
        app.wsgi_app = self.middleware
        app.extensions["sluice"] = self
