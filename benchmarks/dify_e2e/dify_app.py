"""A Dify-shaped Flask app for the end-to-end benchmark (issue 17), served by Gunicorn with
gevent workers like Dify's api container.

Routes (Dify's service API): ``POST /v1/chat-messages`` (``response_mode`` "streaming": SSE, or
"blocking": one JSON answer) and ``POST /v1/workflows/run`` (blocking). ``Authorization: Bearer
<app key>`` names the app. Every call goes through the app's concurrency cap (Dify's
``AppGenerateService.generate``), then to the model over three upstream API keys in rotation with
a 60 s cooldown of a key that answered 429 (Dify's ``ModelInstance._round_robin_invoke``); when
every key is cooling the answer is Dify's ``rate_limit_error`` 429.

``DIFY_E2E_SETUP`` picks the implementation of those two limits:

* ``peer``: Dify's current Redis logic, written here from the description in
  docs of Dify's ``api/core/app/features/rate_limiting/rate_limit.py`` and
  ``api/core/model_manager.py`` (no Dify code): the cap is HLEN of a hash of request ids, then
  HSET (check, then set: not atomic), HDEL on exit, entries older than 600 s dropped at most
  every 300 s; the key is picked by INCR of a shared index modulo the keys, skipping keys whose
  SETEX cooldown key exists. A refusal carries no Retry-After (Dify today).
* ``sluice-host``: ``sluice.dify.RateLimit`` over a host-scope ``sluice.dify.policy`` (shared
  memory), and a ``sluice.Balancer`` ("round_robin", ``shared_region``) whose ``pick.complete(
  status=429)`` cools the key host-wide.
* ``sluice-cluster``: the same RateLimit over a cluster-scope policy (Redis, ``on_failure:
  local`` with ``local_share`` = the worker count), the same host-scope Balancer: sluice.dify has
  no LBModelManager replacement and the Balancer has no cluster scope yet.

Environment: DIFY_E2E_SETUP, DIFY_E2E_REDIS_PORT, DIFY_E2E_UPSTREAM_PORT, DIFY_E2E_CAP,
DIFY_E2E_NAME (names the shared-memory regions), DIFY_E2E_WORKERS; optional
DIFY_E2E_COMMAND_TIMEOUT (sluice-cluster: the Redis store's command_timeout, e.g. "50ms").
"""

from __future__ import annotations

import http.client
import json
import os
import time
import uuid

from flask import Flask, Response, jsonify, request

SETUP = os.environ["DIFY_E2E_SETUP"]
REDIS_PORT = int(os.environ["DIFY_E2E_REDIS_PORT"])
UPSTREAM_PORT = int(os.environ["DIFY_E2E_UPSTREAM_PORT"])
CAP = int(os.environ["DIFY_E2E_CAP"])
NAME = os.environ["DIFY_E2E_NAME"]
WORKERS = int(os.environ.get("DIFY_E2E_WORKERS", "3"))
KEYS = ["key-0", "key-1", "key-2"]
RATE_LIMIT_COOLDOWN = 60  # Dify's cooldown of a config after InvokeRateLimitError
MODEL = "gpt-4o-mini"

app = Flask(__name__)


class QuotaExceeded(Exception):
    """An app with CAP requests in flight (Dify's AppInvokeQuotaExceededError)."""


class AllKeysCooling(Exception):
    """Every key answered 429 or is cooling down (Dify's InvokeRateLimitError)."""


def quota_message(app_id: str) -> str:
    return ("Too many requests. Please try again later. The current maximum concurrent requests "
            f"allowed for {app_id} is {CAP}.")


# ---------------------------------------------------------------- peer: Dify's Redis logic
if SETUP == "peer":
    import redis

    REDIS = redis.Redis(host="127.0.0.1", port=REDIS_PORT, socket_timeout=2,
                        socket_connect_timeout=2)

    class PeerRateLimit:
        """The cap as Dify keeps it: a hash of request id -> start time per app."""

        _last_flush: dict = {}

        def __init__(self, app_id: str) -> None:
            self.app_id = app_id
            self.key = f"dify:rate_limit:{app_id}:active_requests"

        def _flush_cache(self) -> None:
            now = time.time()
            if now - self._last_flush.get(self.app_id, 0.0) < 300:
                return
            self._last_flush[self.app_id] = now
            stale = [rid for rid, started in REDIS.hgetall(self.key).items()
                     if now - float(started) > 600]
            if stale:
                REDIS.hdel(self.key, *stale)

        def enter(self) -> str:
            self._flush_cache()
            if REDIS.hlen(self.key) >= CAP:  # check ...
                raise QuotaExceeded(quota_message(self.app_id))
            request_id = str(uuid.uuid4())
            REDIS.hset(self.key, request_id, time.time())  # ... then set
            return request_id

        def exit(self, request_id: str) -> None:
            REDIS.hdel(self.key, request_id)

        def quota_response(self, error: QuotaExceeded):
            return jsonify(code="too_many_requests", message=str(error), status=429), 429

    class PeerKeys:
        """Round robin by a shared INCR, skipping keys with a SETEX cooldown."""

        index_key = f"model_lb_index:tenant:openai:llm:{MODEL}"

        def _cooldown_key(self, key: str) -> str:
            return f"model_lb_index:cooldown:tenant:openai:llm:{MODEL}:{key}"

        def fetch_next(self):
            for _ in range(len(KEYS)):
                index = REDIS.incr(self.index_key)
                if index == 1:
                    REDIS.expire(self.index_key, 3600)
                if index > 10_000_000:
                    REDIS.set(self.index_key, 1)
                key = KEYS[index % len(KEYS)]
                if REDIS.exists(self._cooldown_key(key)):
                    continue
                return key
            return None

        def pick(self):
            key = self.fetch_next()
            if key is None:
                raise AllKeysCooling()
            return key, lambda status: (REDIS.setex(self._cooldown_key(key), RATE_LIMIT_COOLDOWN,
                                                    "true") if status == 429 else None)

    def make_limit(app_id: str):
        return PeerRateLimit(app_id)

    KEY_ROTATION = PeerKeys()

# ---------------------------------------------------------------- sluice: host or cluster scope
else:
    import sluice
    import sluice.dify

    if SETUP == "sluice-host":
        POLICY = sluice.dify.policy("host", name=NAME)
    elif SETUP == "sluice-cluster":
        POLICY = sluice.dify.policy("cluster", name=NAME,
                                    redis_url=f"redis://127.0.0.1:{REDIS_PORT}/0",
                                    local_share=WORKERS)
        if os.environ.get("DIFY_E2E_COMMAND_TIMEOUT"):  # default: sluice.dify.policy()'s 100 ms
            document = json.loads(POLICY)
            document["stores"][0]["command_timeout"] = os.environ["DIFY_E2E_COMMAND_TIMEOUT"]
            POLICY = json.dumps(document)
    else:
        raise SystemExit(f"dify_app: DIFY_E2E_SETUP must be peer, sluice-host or sluice-cluster, "
                         f"got {SETUP!r}")
    # Runs in each worker after Gunicorn forked it (no --preload): one Governor per worker.
    sluice.dify.configure(sluice.dify.AppConcurrency(sluice.Governor(POLICY)))

    class SluiceLimit:
        def __init__(self, app_id: str) -> None:
            self.limit = sluice.dify.RateLimit(app_id, CAP)

        def enter(self) -> str:
            try:
                return self.limit.enter()
            except sluice.dify.AppInvokeQuotaExceededError as error:
                raise QuotaExceeded(str(error)) from error

        def exit(self, request_id: str) -> None:
            self.limit.exit(request_id)

        def quota_response(self, error: QuotaExceeded):
            body, status, headers = sluice.dify.quota_exceeded_response(error.__cause__)
            return jsonify(body), status, headers

    class SluiceKeys:
        def __init__(self) -> None:
            self.balancer = sluice.Balancer(
                "round_robin", shared_region=f"{NAME}.lb",
                cooldown_rate_limited=float(RATE_LIMIT_COOLDOWN))
            for key in KEYS:
                self.balancer.add_endpoint(key, labels={"api_key": key})

        def pick(self):
            try:
                chosen = self.balancer.pick(model=MODEL)
            except sluice.Error as error:  # every key cooling down
                raise AllKeysCooling() from error
            return chosen.label("api_key"), lambda status: chosen.complete(status=status)

    def make_limit(app_id: str):
        return SluiceLimit(app_id)

    KEY_ROTATION = SluiceKeys()


# ---------------------------------------------------------------- the model call
def call_model(app_id: str, stream: bool, chunks: int, gap: float):
    """(response, finish) from the first key that does not answer 429, trying each key at
    most once (Dify's _round_robin_invoke; Dify itself never retries a stream, here both
    modes retry while no byte has reached the client, for every setup alike)."""
    for _ in range(len(KEYS)):
        key, finish = KEY_ROTATION.pick()
        connection = http.client.HTTPConnection("127.0.0.1", UPSTREAM_PORT, timeout=30)
        connection.request("POST", "/v1/chat/completions", body=json.dumps(
            {"model": MODEL, "stream": stream, "chunks": chunks, "gap": gap,
             "messages": [{"role": "user", "content": "hi"}]}),
            headers={"Authorization": f"Bearer {key}", "X-App": app_id,
                     "Content-Type": "application/json"})
        response = connection.getresponse()
        if response.status == 429:
            response.read()
            connection.close()
            finish(429)
            continue
        return response, connection, finish
    raise AllKeysCooling()


class Held:
    """A streamed answer holding its slot: exits once, at the end, on error or on close()
    (Dify's RateLimitGenerator; the WSGI server closes it when the client goes away)."""

    def __init__(self, limit, request_id, response, connection, finish) -> None:
        self.limit, self.request_id = limit, request_id
        self.response, self.connection, self.finish = response, connection, finish
        self.closed = False

    def __iter__(self):
        try:
            for line in self.response:
                if line.strip():
                    yield line + b"\n"
        finally:
            self.close()

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        try:
            self.connection.close()
            self.finish(200)
        finally:
            self.limit.exit(self.request_id)


def invoke(streaming: bool):
    auth = request.headers.get("Authorization", "")
    app_id = auth.partition(" ")[2] or "anonymous"
    body = request.get_json(silent=True) or {}
    limit = make_limit(app_id)
    try:
        request_id = limit.enter()
    except QuotaExceeded as error:
        return limit.quota_response(error)
    chunks, gap = int(body.get("chunks", 8)), float(body.get("gap", 0.02))
    try:
        response, connection, finish = call_model(app_id, streaming, chunks, gap)
    except AllKeysCooling:
        limit.exit(request_id)
        return jsonify(code="rate_limit_error", message="Rate Limit Error", status=429), 429
    except BaseException:
        limit.exit(request_id)
        raise
    headers = {"X-Worker": str(os.getpid())}
    if not streaming:  # a blocking answer exits at once (RateLimit.generate of a Mapping)
        try:
            answer = json.loads(response.read())
            connection.close()
            finish(200)
        finally:
            limit.exit(request_id)
        return jsonify(event="message", answer=answer["choices"][0]["message"]["content"]), \
            200, headers
    held = Held(limit, request_id, response, connection, finish)
    return Response(iter(held), mimetype="text/event-stream", headers=headers)


@app.post("/v1/chat-messages")
def chat_messages():
    body = request.get_json(silent=True) or {}
    return invoke(body.get("response_mode", "streaming") == "streaming")


@app.post("/v1/workflows/run")
def workflows_run():
    return invoke(False)


@app.get("/_failure_mode")
def failure_mode():
    """This worker's cluster-scope decisions taken by the failure mode (Redis not answering in
    time): the sluice setups' Governor counts them; the peer has none."""
    total = 0.0
    if SETUP != "peer":
        for line in sluice.dify.backend().governor.metrics_text().splitlines():
            if line.startswith("sluice_failure_mode_decisions_total{"):
                total += float(line.rsplit(" ", 1)[1])
    return jsonify(worker=os.getpid(), decisions=total)


@app.get("/health")
def health():
    return "ok"
