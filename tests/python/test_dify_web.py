"""sluice.dify's web layer: GovernorMiddleware (raw WSGI) and FlaskGovernor, with route, header,
API key and client-ip rules, Dify's 429 shape, streams that hold their slot until closed, and
/metrics. Time is a ManualClock; nothing sleeps."""

from __future__ import annotations

import json
import textwrap

import pytest

import sluice
import sluice.dify as dify

POLICY = """
version: 1
name: pytest-web
rules:
  - name: stream-slots
    match: {route: /v1/chat-messages}
    key: [api_key]
    concurrency: 1
  - name: login-per-ip
    match: {route: /login}
    key: [ip]
    requests: [2/1m]
  - name: free-plan
    match: {header.x-plan: free}
    key: [header.x-plan]
    requests: [1/1m]
  - name: per-tenant
    match: {tenant: "*"}
    key: [tenant]
    requests: [1/1m]
"""


def governor() -> sluice.Governor:
    return sluice.Governor(textwrap.dedent(POLICY), clock=sluice.ManualClock(0.0))


class Stream:
    """A WSGI body that records whether it was closed."""

    def __init__(self, chunks, fail_with=None):
        self.chunks = list(chunks)
        self.fail_with = fail_with
        self.closed = False

    def __iter__(self):
        yield from self.chunks
        if self.fail_with is not None:
            raise self.fail_with

    def close(self):
        self.closed = True


def wsgi_app(body_factory=lambda: [b"ok"], content_type="text/plain"):
    seen = []

    def app(environ, start_response):
        seen.append(environ)
        start_response("200 OK", [("Content-Type", content_type)])
        return body_factory()

    return app, seen


def call(app, path="/", **environ_extra):
    """Runs one request through a WSGI app: (status, headers, iterable)."""
    environ = {"REQUEST_METHOD": "GET", "PATH_INFO": path, "REMOTE_ADDR": "198.51.100.7",
               "wsgi.input": None}
    environ.update(environ_extra)
    captured = {}

    def start_response(status, headers, exc_info=None):
        captured["status"], captured["headers"] = status, headers

    body = app(environ, start_response)
    return captured["status"], dict(captured["headers"]), body


def test_refusal_is_difys_too_many_requests_with_retry_after_and_ratelimit_headers():
    app, _ = wsgi_app()
    middleware = dify.GovernorMiddleware(app, governor())
    for _ in range(2):
        status, headers, body = call(middleware, "/login")
        assert status == "200 OK"
        assert "RateLimit" in headers and "RateLimit-Policy" in headers
        body.close()
    status, headers, body = call(middleware, "/login")
    assert status.startswith("429")
    assert json.loads(b"".join(body)) == {"code": "too_many_requests", "status": 429,
                                          "message": "Too many requests. Please try again later."}
    assert headers["Content-Type"] == "application/json"
    assert int(headers["Retry-After"]) >= 1
    assert headers["RateLimit-Policy"].startswith('"login-per-ip"')


def test_streaming_response_holds_its_slot_until_the_server_closes_it():
    streams = []

    def make():
        streams.append(Stream([b"data: 1\n\n", b"data: 2\n\n"]))
        return streams[-1]

    app, _ = wsgi_app(make, "text/event-stream")
    middleware = dify.GovernorMiddleware(app, governor())
    key = {"HTTP_AUTHORIZATION": "Bearer app-one"}
    _, _, first = call(middleware, "/v1/chat-messages", **key)
    assert next(iter(first)) == b"data: 1\n\n"
    status, _, _ = call(middleware, "/v1/chat-messages", **key)
    assert status.startswith("429"), "the live stream holds the key's only slot"
    other_status, _, other = call(middleware, "/v1/chat-messages",
                                  HTTP_AUTHORIZATION="Bearer app-two")
    assert other_status == "200 OK", "another API key has its own slot"
    other.close()
    first.close()  # the client went away mid-stream: the server closes the iterable
    assert streams[0].closed
    status, _, again = call(middleware, "/v1/chat-messages", **key)
    assert status == "200 OK", "closing released the slot"
    assert b"".join(again) == b"data: 1\n\ndata: 2\n\n"
    again.close()


def test_an_app_that_raises_releases_its_slot():
    def app(environ, start_response):
        raise RuntimeError("view failed")

    middleware = dify.GovernorMiddleware(app, governor())
    key = {"HTTP_AUTHORIZATION": "Bearer app-raise"}
    for _ in range(2):
        with pytest.raises(RuntimeError):
            call(middleware, "/v1/chat-messages", **key)


def test_a_response_collected_without_close_gives_its_slot_back():
    app, _ = wsgi_app(lambda: [b"x"])
    middleware = dify.GovernorMiddleware(app, governor())
    key = {"HTTP_AUTHORIZATION": "Bearer app-gc"}
    _, _, body = call(middleware, "/v1/chat-messages", **key)
    del body
    import gc
    gc.collect()
    status, _, body = call(middleware, "/v1/chat-messages", **key)
    assert status == "200 OK"
    body.close()


def test_x_forwarded_for_is_ignored_without_a_trusted_proxy():
    app, _ = wsgi_app()
    middleware = dify.GovernorMiddleware(app, governor())
    for n in range(2):
        status, _, body = call(middleware, "/login", HTTP_X_FORWARDED_FOR=f"203.0.113.{n}")
        assert status == "200 OK"
        body.close()
    status, _, _ = call(middleware, "/login", HTTP_X_FORWARDED_FOR="203.0.113.99")
    assert status.startswith("429"), "a spoofed X-Forwarded-For must not buy a new ip"


def test_with_one_trusted_proxy_the_rightmost_forwarded_address_is_the_client():
    reader = dify.RequestReader(trusted_proxies=1)
    environ = {"REMOTE_ADDR": "10.0.0.2", "HTTP_X_FORWARDED_FOR": "6.6.6.6, 203.0.113.5"}
    assert reader.ip(environ) == "203.0.113.5", "the client's own 6.6.6.6 is not trusted"
    assert dify.RequestReader(trusted_proxies=2).ip(environ) == "6.6.6.6"
    assert dify.RequestReader(trusted_proxies=3).ip(environ) == "10.0.0.2", "too few hops"
    garbage = {"REMOTE_ADDR": "10.0.0.2", "HTTP_X_FORWARDED_FOR": "not-an-ip"}
    assert reader.ip(garbage) == "10.0.0.2"
    assert dify.RequestReader().ip({"REMOTE_ADDR": "junk"}) is None
    with pytest.raises(ValueError, match="trusted_proxies must be an int >= 0"):
        dify.RequestReader(trusted_proxies=-1)


def test_header_and_callback_attributes_reach_the_rules():
    app, _ = wsgi_app()
    middleware = dify.GovernorMiddleware(
        app, governor(), attributes=lambda environ: {"tenant": environ.get("HTTP_X_TENANT")}
        if "HTTP_X_TENANT" in environ else None)
    assert call(middleware, "/x", HTTP_X_PLAN="free")[0] == "200 OK"
    assert call(middleware, "/x", HTTP_X_PLAN="free")[0].startswith("429")
    assert call(middleware, "/x", HTTP_X_PLAN="paid")[0] == "200 OK"
    assert call(middleware, "/x", HTTP_X_TENANT="t1")[0] == "200 OK"
    assert call(middleware, "/x", HTTP_X_TENANT="t1")[0].startswith("429")
    assert call(middleware, "/x", HTTP_X_TENANT="t2")[0] == "200 OK"


def test_hostile_headers_are_bounded_and_never_break_admission():
    reader = dify.RequestReader()
    not_utf8 = b"\xff\xfe\xc3".decode("latin-1")
    huge_a, huge_b = "a" * 100_000 + "1", "a" * 100_000 + "2"
    environ = {f"HTTP_JUNK_{n}": "x" for n in range(500)}
    environ.update(HTTP_X_BAD=not_utf8, HTTP_X_HUGE=huge_a)
    headers = reader.headers(environ)
    assert len(headers) <= dify.MAX_HEADERS
    assert reader.headers({"HTTP_X_BAD": not_utf8})["x-bad"] == "\ufffd\ufffd\ufffd"
    first = reader.headers({"HTTP_X_HUGE": huge_a})["x-huge"]
    assert first.startswith("sha256:") and len(first) < 100
    assert first != reader.headers({"HTTP_X_HUGE": huge_b})["x-huge"], "no shared key"
    utf8 = "免费".encode().decode("latin-1")  # what a WSGI server hands over for UTF-8 bytes
    assert reader.headers({"HTTP_X_PLAN": utf8})["x-plan"] == "免费"
    app, _ = wsgi_app()
    middleware = dify.GovernorMiddleware(app, governor())
    status, _, body = call(middleware, "/v1/chat-messages", HTTP_AUTHORIZATION="Bearer " + huge_a,
                           HTTP_X_BAD=not_utf8, PATH_INFO="/v1/chat-messages")
    assert status == "200 OK"
    body.close()
    assert reader.api_key({"HTTP_AUTHORIZATION": "Basic abc"}) is None
    assert reader.api_key({"HTTP_AUTHORIZATION": "Bearer   "}) is None
    assert "authorization" not in reader.headers({"HTTP_AUTHORIZATION": "Bearer secret"})


def test_a_limit_refused_inside_an_event_stream_ends_it_with_a_429_event():
    decision_source = sluice.Governor(textwrap.dedent("""
        version: 1
        name: pytest-web-inner
        rules: [{name: inner, requests: [1/1m]}]
    """), clock=sluice.ManualClock(0.0))
    decision_source.admit().release()
    refused = decision_source.admit()
    error = sluice.RuleRateLimited(refused)
    stream = Stream([b"data: {\"event\": \"message\"}\n\n"], fail_with=error)
    app, _ = wsgi_app(lambda: stream, "text/event-stream")
    middleware = dify.GovernorMiddleware(app, governor())
    _, _, body = call(middleware, "/events")
    chunks = list(body)
    body.close()
    assert chunks[0] == b"data: {\"event\": \"message\"}\n\n"
    event = json.loads(chunks[1].decode()[len("data: "):])
    assert (event["event"], event["code"], event["status"]) == ("error", "too_many_requests", 429)
    assert event["retry_after"] >= 1
    model_refusal = dify.ModelRateLimited(refused, "openai", "gpt-4o")
    stream = Stream([], fail_with=model_refusal)
    app, _ = wsgi_app(lambda: stream, "text/event-stream; charset=utf-8")
    _, _, body = call(dify.GovernorMiddleware(app, governor()), "/events")
    event = json.loads(b"".join(body).decode()[len("data: "):])
    body.close()
    assert (event["code"], event["status"]) == ("rate_limit_error", 429), "a model-call limit"
    assert "openai/gpt-4o" in event["message"]
    plain = Stream([b"x"], fail_with=error)
    app, _ = wsgi_app(lambda: plain, "application/json")
    _, _, body = call(dify.GovernorMiddleware(app, governor()), "/plain")
    with pytest.raises(sluice.RateLimited):
        list(body)  # not a stream of events: the server handles it as any error
    body.close()


def test_metrics_endpoint_serves_the_governors_prometheus_text():
    app, seen = wsgi_app()
    g = governor()
    middleware = dify.GovernorMiddleware(app, g, metrics_path="/internal/metrics")
    call(middleware, "/login")[2].close()
    status, headers, body = call(middleware, "/internal/metrics")
    text = b"".join(body).decode()
    assert status == "200 OK" and headers["Content-Type"].startswith("text/plain; version=0.0.4")
    assert 'sluice_decisions_total{result="allowed",rule="login-per-ip"} 1' in text
    assert len(seen) == 1, "the metrics path never reaches the app"
    off = dify.GovernorMiddleware(app, g, metrics_path=None)
    assert call(off, "/metrics")[0] == "200 OK" and len(seen) == 2
    with pytest.raises(ValueError, match="metrics_path must be a path"):
        dify.GovernorMiddleware(app, g, metrics_path="metrics")
    with pytest.raises(TypeError, match="governor must be a sluice.Governor"):
        dify.GovernorMiddleware(app, object())


flask = pytest.importorskip("flask")


def flask_app(g):
    app = flask.Flask("pytest-web")

    @app.post("/v1/chat-messages")
    def chat():
        def events():
            yield "data: {\"answer\": \"one\"}\n\n"
            yield "data: {\"answer\": \"two\"}\n\n"
        return flask.Response(events(), mimetype="text/event-stream")

    @app.get("/login")
    def login():
        return {"result": "success"}

    dify.FlaskGovernor(app, g, trusted_proxies=1)
    return app


def test_flask_extension_refuses_with_difys_shape_and_serves_metrics():
    app = flask_app(governor())
    client = app.test_client()
    environ = {"REMOTE_ADDR": "10.0.0.2"}
    for _ in range(2):
        ok = client.get("/login", headers={"X-Forwarded-For": "203.0.113.8"},
                        environ_base=environ)
        assert ok.status_code == 200 and "RateLimit" in ok.headers
    refused = client.get("/login", headers={"X-Forwarded-For": "203.0.113.8"},
                         environ_base=environ)
    assert refused.status_code == 429
    assert refused.get_json()["code"] == "too_many_requests"
    assert int(refused.headers["Retry-After"]) >= 1
    other = client.get("/login", headers={"X-Forwarded-For": "203.0.113.9"},
                       environ_base=environ)
    assert other.status_code == 200, "behind one trusted proxy each client ip counts alone"
    metrics = client.get("/metrics")
    assert metrics.status_code == 200 and b"sluice_decisions_total" in metrics.data
    assert app.extensions["sluice"].governor is not None


def test_flask_stream_holds_its_slot_until_the_client_closes_it():
    app = flask_app(governor())
    client = app.test_client()
    auth = {"Authorization": "Bearer app-flask"}
    first = client.post("/v1/chat-messages", headers=auth, buffered=False)
    assert next(iter(first.response)) == b"data: {\"answer\": \"one\"}\n\n"
    assert client.post("/v1/chat-messages", headers=auth).status_code == 429
    first.close()  # the client disconnects mid-stream
    second = client.post("/v1/chat-messages", headers=auth)
    assert second.status_code == 200
    assert second.data == b"data: {\"answer\": \"one\"}\n\ndata: {\"answer\": \"two\"}\n\n"
