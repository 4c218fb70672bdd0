"""A Dify-shaped Flask app for the end-to-end benchmark (issue 17), served by Gunicorn with
gevent workers like Dify's api container.

Routes (Dify's service API): ``POST /v1/chat-messages`` (``response_mode`` "streaming": SSE, or
"blocking": one JSON answer) and ``POST /v1/workflows/run`` (blocking, or "streaming" with Dify's
double enter, below). ``Authorization: Bearer <app key>`` names the app; an app id ending in
``.cap<N>`` has cap N (Dify reads each app's cap from its database), any other has
DIFY_E2E_CAP. Every call goes through the app's concurrency cap (Dify's
``AppGenerateService.generate``), then to the model over three upstream API keys with a 60 s
cooldown of a key that answered 429 (Dify's ``ModelInstance._round_robin_invoke`` over an
``LBModelManager``); when every key is cooling the answer is Dify's ``rate_limit_error`` 429.
``POST /console/api/login`` is an attempt-limited route (Dify's ``helper.RateLimiter``:
ATTEMPTS per ATTEMPT_WINDOW seconds per e-mail, checked before the attempt and recorded after).

A streaming workflow run does what Dify's ``_stream_workflow`` does (Dify #35895, reference
section 1): enter the request id, enter it a second time inside ``rate_limit_context`` while the
run is prepared, leave that context (one exit) and only then stream, the stream exiting once
more at its end.

``DIFY_E2E_SETUP`` picks the implementation of the three limits:

* ``peer``: Dify's current Redis logic, written here from the description of Dify's
  ``core/app/features/rate_limiting/rate_limit.py``, ``core/model_manager.py`` and
  ``libs/helper.py`` (no Dify code): the cap is HLEN of a hash of request ids, then HSET (check,
  then set: not atomic), HDEL on exit, entries older than 600 s dropped at most every 300 s; the
  key is picked by INCR of a shared index modulo the keys, skipping keys whose SETEX cooldown key
  exists; the attempt limiter is a sorted set per key (ZREMRANGEBYSCORE older than the window,
  ZCARD >= N; then ZADD {int(now): int(now)} and EXPIRE 2 x window). A cap refusal carries no
  Retry-After (Dify today); an attempt refusal carries ``seconds_until_available``.
* ``sluice-host``: ``sluice.dify.RateLimit`` / ``rate_limit_context`` over a host-scope
  ``sluice.dify.policy`` (shared memory), ``sluice.dify.LBModelManager`` with
  ``invoke_with_key_rotation``, and ``sluice.dify.AttemptLimiter`` in host scope.
* ``sluice-cluster``: the same over a cluster-scope policy (Redis, ``on_failure: local`` with
  ``local_share`` = the worker count) and cluster-scope attempt limiters (the same Redis).

The key rotation's scope is ``DIFY_E2E_KEY_SCOPE`` (sluice setups: "host", the default, or
"process"; see KEY_ROTATION_SCOPES).

Environment: DIFY_E2E_SETUP, DIFY_E2E_REDIS_PORT, DIFY_E2E_UPSTREAM_PORT, DIFY_E2E_CAP,
DIFY_E2E_NAME (names the shared-memory regions), DIFY_E2E_WORKERS, DIFY_E2E_ATTEMPTS,
DIFY_E2E_ATTEMPT_WINDOW (seconds); optional DIFY_E2E_KEY_SCOPE and DIFY_E2E_COMMAND_TIMEOUT
(sluice-cluster: the Redis store's command_timeout, e.g. "50ms").
"""

from __future__ import annotations

import http.client
import json
import os
import re
import time
import uuid
from contextlib import contextmanager
from types import SimpleNamespace

from flask import Flask, Response, jsonify, request

SETUP = os.environ["DIFY_E2E_SETUP"]
REDIS_PORT = int(os.environ["DIFY_E2E_REDIS_PORT"])
UPSTREAM_PORT = int(os.environ["DIFY_E2E_UPSTREAM_PORT"])
CAP = int(os.environ["DIFY_E2E_CAP"])
NAME = os.environ["DIFY_E2E_NAME"]
WORKERS = int(os.environ.get("DIFY_E2E_WORKERS", "3"))
ATTEMPTS = int(os.environ.get("DIFY_E2E_ATTEMPTS", "3"))
ATTEMPT_WINDOW = int(os.environ.get("DIFY_E2E_ATTEMPT_WINDOW", "3"))
KEY_SCOPE = os.environ.get("DIFY_E2E_KEY_SCOPE", "host")
KEYS = ["key-0", "key-1", "key-2"]
RATE_LIMIT_COOLDOWN = 60  # Dify's cooldown of a config after InvokeRateLimitError
TENANT, PROVIDER, MODEL_TYPE, MODEL = "tenant-1", "openai", "llm", "gpt-4o-mini"
# Dify's ModelLoadBalancingConfiguration: id, name, credentials.
CONFIGS = [SimpleNamespace(id=key, name=key, credentials={"openai_api_key": key}) for key in KEYS]

app = Flask(__name__)


def app_cap(app_id: str) -> int:
    match = re.search(r"\.cap(\d+)$", app_id)
    return int(match.group(1)) if match else CAP


class QuotaExceeded(Exception):
    """An app with its cap of requests in flight (Dify's AppInvokeQuotaExceededError)."""


class InvokeRateLimitError(Exception):
    """The upstream answered 429 (Dify's model runtime error of this name, which
    sluice.dify.classify_invoke_error recognises by class name)."""


class AllKeysCooling(Exception):
    """Every key answered 429 or is cooling down (Dify's InvokeRateLimitError at the end of
    _round_robin_invoke, or no key to try)."""


def quota_message(app_id: str) -> str:
    return ("Too many requests. Please try again later. The current maximum concurrent requests "
            f"allowed for {app_id} is {app_cap(app_id)}.")


def upstream_call(app_id: str, stream: bool, chunks: int, gap: float):
    """``call(config)`` for a key rotation: one call to the mock upstream with the config's key.
    A 429 raises InvokeRateLimitError; a stream is returned as a generator of SSE lines (its
    connection closed when it ends or is closed), a blocking answer as the parsed JSON."""

    def call(config):
        connection = http.client.HTTPConnection("127.0.0.1", UPSTREAM_PORT, timeout=30)
        try:
            connection.request("POST", "/v1/chat/completions", body=json.dumps(
                {"model": MODEL, "stream": stream, "chunks": chunks, "gap": gap,
                 "messages": [{"role": "user", "content": "hi"}]}),
                headers={"Authorization": f"Bearer {config.credentials['openai_api_key']}",
                         "X-App": app_id, "Content-Type": "application/json"})
            response = connection.getresponse()
            if response.status == 429:
                response.read()
                raise InvokeRateLimitError(f"Rate limit reached for {config.id}")
            if not stream:
                return json.loads(response.read())
        except BaseException:
            connection.close()
            raise
        return lines(response, connection)

    return call


def lines(response, connection):
    try:
        for line in response:
            if line.strip():
                yield line + b"\n"
    finally:
        connection.close()


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
            self.cap = app_cap(app_id)
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

        def enter(self, request_id=None) -> str:
            self._flush_cache()
            if REDIS.hlen(self.key) >= self.cap:  # check ...
                raise QuotaExceeded(quota_message(self.app_id))
            request_id = request_id or str(uuid.uuid4())
            REDIS.hset(self.key, request_id, time.time())  # ... then set
            return request_id

        def exit(self, request_id: str) -> None:
            REDIS.hdel(self.key, request_id)

        def quota_response(self, error: QuotaExceeded):
            return jsonify(code="too_many_requests", message=str(error), status=429), 429

    @contextmanager
    def rate_limit_context(limit, request_id):
        request_id = limit.enter(request_id)
        try:
            yield request_id
        finally:
            limit.exit(request_id)

    class PeerLBModelManager:
        """Dify's LBModelManager: round robin by a shared INCR, cooldowns as SETEX keys."""

        def __init__(self, tenant_id, provider, model_type, model, configs) -> None:
            self.tuple = f"{tenant_id}:{provider}:{model_type}:{model}"
            self.configs = configs

        def fetch_next(self):
            index_key = f"model_lb_index:{self.tuple}"
            for _ in range(len(self.configs)):
                index = REDIS.incr(index_key)
                if index == 1:
                    REDIS.expire(index_key, 3600)
                if index > 10_000_000:
                    REDIS.set(index_key, 1)
                config = self.configs[index % len(self.configs)]
                if self.in_cooldown(config):
                    continue
                return config
            return None

        @staticmethod
        def _cooldown_key(tuple_key: str, config_id: str) -> str:
            return f"model_lb_index:cooldown:{tuple_key}:{config_id}"

        def cooldown(self, config, expire: int = 60) -> None:
            REDIS.setex(self._cooldown_key(self.tuple, config.id), expire, "true")

        def in_cooldown(self, config) -> bool:
            return bool(REDIS.exists(self._cooldown_key(self.tuple, config.id)))

        @staticmethod
        def get_config_in_cooldown_and_ttl(tenant_id, provider, model_type, model, config_id):
            ttl = REDIS.ttl(PeerLBModelManager._cooldown_key(
                f"{tenant_id}:{provider}:{model_type}:{model}", config_id))
            return (True, ttl) if ttl > 0 else (False, 0)

    def invoke_with_key_rotation(manager, call, stream: bool):
        """Dify's _round_robin_invoke: the next config, 60 s cooldown on a rate limit, then the
        next (a stream's 429 arrives as its HTTP status, before any chunk: retried here too)."""
        last = None
        for _ in range(len(manager.configs)):
            config = manager.fetch_next()
            if config is None:
                break
            try:
                return call(config)
            except InvokeRateLimitError as error:
                manager.cooldown(config, expire=RATE_LIMIT_COOLDOWN)
                last = error
        raise AllKeysCooling() from last

    class PeerAttemptLimiter:
        """Dify's helper.RateLimiter: a sorted set per key, checked, then added to."""

        def __init__(self, prefix: str, max_attempts: int, time_window: int) -> None:
            self.prefix, self.max_attempts, self.time_window = prefix, max_attempts, time_window

        def _key(self, key: str) -> str:
            return f"{self.prefix}:{key}"

        def is_rate_limited(self, key: str) -> bool:
            now = int(time.time())
            REDIS.zremrangebyscore(self._key(key), "-inf", now - self.time_window)
            attempts = REDIS.zcard(self._key(key))
            return bool(attempts) and int(attempts) >= self.max_attempts

        def increment_rate_limit(self, key: str) -> None:
            now = int(time.time())
            REDIS.zadd(self._key(key), {now: now})  # members of one second collide
            REDIS.expire(self._key(key), self.time_window * 2)

        def seconds_until_available(self, key: str) -> int:
            oldest = REDIS.zrange(self._key(key), 0, 0, withscores=True)
            if not oldest:
                return 1
            return max(1, int(oldest[0][1]) + self.time_window - int(time.time()))

    def make_limit(app_id: str):
        return PeerRateLimit(app_id)

    def key_manager():
        return PeerLBModelManager(TENANT, PROVIDER, MODEL_TYPE, MODEL, CONFIGS)

    LB_MODEL_MANAGER = PeerLBModelManager
    LOGIN_LIMITER = PeerAttemptLimiter("login_rate_limit", ATTEMPTS, ATTEMPT_WINDOW)

    def failure_mode_decisions() -> float:
        return 0.0

# ---------------------------------------------------------------- sluice: host or cluster scope
else:
    import sluice
    import sluice.dify

    def redis_store():
        return sluice.RedisStore("127.0.0.1", REDIS_PORT, command_timeout=0.1)

    if SETUP == "sluice-host":
        POLICY = sluice.dify.policy("host", name=NAME)
        sluice.dify.configure_attempt_limiters("host", name=NAME)
    elif SETUP == "sluice-cluster":
        POLICY = sluice.dify.policy("cluster", name=NAME,
                                    redis_url=f"redis://127.0.0.1:{REDIS_PORT}/0",
                                    local_share=WORKERS)
        if os.environ.get("DIFY_E2E_COMMAND_TIMEOUT"):  # default: sluice.dify.policy()'s 100 ms
            document = json.loads(POLICY)
            document["stores"][0]["command_timeout"] = os.environ["DIFY_E2E_COMMAND_TIMEOUT"]
            POLICY = json.dumps(document)
        sluice.dify.configure_attempt_limiters("cluster", name=NAME, redis=redis_store(),
                                               local_share=WORKERS)
    else:
        raise SystemExit(f"dify_app: DIFY_E2E_SETUP must be peer, sluice-host or sluice-cluster, "
                         f"got {SETUP!r}")
    # Runs in each worker after Gunicorn forked it (no --preload): one Governor per worker.
    sluice.dify.configure(sluice.dify.AppConcurrency(sluice.Governor(POLICY)))

    # configure_key_rotation's arguments per DIFY_E2E_KEY_SCOPE.
    KEY_ROTATION_SCOPES = {
        "cluster": dict(region_prefix=f"{NAME}.lb", redis=redis_store()),
        "host": dict(region_prefix=f"{NAME}.lb"),
        "process": {},
    }
    if KEY_SCOPE not in KEY_ROTATION_SCOPES:
        raise SystemExit(f"dify_app: DIFY_E2E_KEY_SCOPE must be one of "
                         f"{', '.join(KEY_ROTATION_SCOPES)}, got {KEY_SCOPE!r}")
    sluice.dify.configure_key_rotation(KEY_SCOPE, **KEY_ROTATION_SCOPES[KEY_SCOPE])

    class SluiceLimit:
        def __init__(self, app_id: str) -> None:
            self.limit = sluice.dify.RateLimit(app_id, app_cap(app_id))

        def enter(self, request_id=None) -> str:
            try:
                return self.limit.enter(request_id)
            except sluice.dify.AppInvokeQuotaExceededError as error:
                raise QuotaExceeded(str(error)) from error

        def exit(self, request_id: str) -> None:
            self.limit.exit(request_id)

        def quota_response(self, error: QuotaExceeded):
            body, status, headers = sluice.dify.quota_exceeded_response(error.__cause__)
            return jsonify(body), status, headers

    @contextmanager
    def rate_limit_context(limit, request_id):
        try:
            with sluice.dify.rate_limit_context(limit.limit, request_id) as entered:
                yield entered
        except sluice.dify.AppInvokeQuotaExceededError as error:
            raise QuotaExceeded(str(error)) from error

    def invoke_with_key_rotation(manager, call, stream: bool):
        try:
            return sluice.dify.invoke_with_key_rotation(manager, call, stream=stream)
        except (InvokeRateLimitError, sluice.dify.NoKeyAvailable) as error:
            raise AllKeysCooling() from error

    def make_limit(app_id: str):
        return SluiceLimit(app_id)

    def key_manager():  # Dify makes one per ModelInstance, i.e. per request
        return sluice.dify.LBModelManager(TENANT, PROVIDER, MODEL_TYPE, MODEL, CONFIGS)

    LB_MODEL_MANAGER = sluice.dify.LBModelManager
    # Dify makes its limiters at import time, after the scope is configured (above).
    LOGIN_LIMITER = sluice.dify.AttemptLimiter("login_rate_limit", ATTEMPTS, ATTEMPT_WINDOW)

    def failure_mode_decisions() -> float:
        total = 0.0
        for line in sluice.dify.backend().governor.metrics_text().splitlines():
            if line.startswith("sluice_failure_mode_decisions_total{"):
                total += float(line.rsplit(" ", 1)[1])
        return total


# ---------------------------------------------------------------- the model call
class Held:
    """A streamed answer holding its slot: exits once, at the end, on error or on close()
    (Dify's RateLimitGenerator; the WSGI server closes it when the client goes away). Closing
    the model's stream ends its key pick (sluice: the pick is held, in flight, until then)."""

    def __init__(self, limit, request_id, chunks) -> None:
        self.limit, self.request_id, self.chunks = limit, request_id, chunks
        self.closed = False

    def __iter__(self):
        try:
            yield from self.chunks
        finally:
            self.close()

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        try:
            self.chunks.close()
        finally:
            self.limit.exit(self.request_id)


def rate_limit_error():
    return jsonify(code="rate_limit_error", message="Rate Limit Error", status=429), 429


def invoke(streaming: bool, double_enter: bool = False):
    auth = request.headers.get("Authorization", "")
    app_id = auth.partition(" ")[2] or "anonymous"
    body = request.get_json(silent=True) or {}
    limit = make_limit(app_id)
    chunks, gap = int(body.get("chunks", 8)), float(body.get("gap", 0.02))
    try:
        request_id = limit.enter(str(uuid.uuid4()))
    except QuotaExceeded as error:
        return limit.quota_response(error)
    try:
        if double_enter:  # Dify's _stream_workflow: the same id again, exited before the stream
            with rate_limit_context(limit, request_id):
                pass  # Dify builds the run's payload and subscribes to its events here
        answer = invoke_with_key_rotation(key_manager(), upstream_call(app_id, streaming,
                                                                       chunks, gap), streaming)
    except QuotaExceeded as error:
        limit.exit(request_id)
        return limit.quota_response(error)
    except AllKeysCooling:
        limit.exit(request_id)
        return rate_limit_error()
    except BaseException:
        limit.exit(request_id)
        raise
    headers = {"X-Worker": str(os.getpid())}
    if not streaming:  # a blocking answer exits at once (RateLimit.generate of a Mapping)
        limit.exit(request_id)
        return jsonify(event="message", answer=answer["choices"][0]["message"]["content"]), \
            200, headers
    held = Held(limit, request_id, answer)
    # Werkzeug closes the response it was given: held.close() also when iteration never began.
    return Response(held, mimetype="text/event-stream", headers=headers)


@app.post("/v1/chat-messages")
def chat_messages():
    body = request.get_json(silent=True) or {}
    return invoke(body.get("response_mode", "streaming") == "streaming")


@app.post("/v1/workflows/run")
def workflows_run():
    body = request.get_json(silent=True) or {}
    streaming = body.get("response_mode", "blocking") == "streaming"
    return invoke(streaming, double_enter=streaming)


@app.post("/console/api/login")
def login():
    """An attempt-limited route (Dify's e-mail code / password-reset routes): refused while the
    e-mail has ATTEMPTS attempts in the last ATTEMPT_WINDOW seconds, else the attempt is
    recorded. sluice's increment_rate_limit also says whether it recorded (False: the limit was
    reached since the check) and the route refuses then; Dify's limiter returns nothing. The 200
    carries the monotonic times around the admission, so the runner can count admissions per
    window across workers."""
    email = (request.get_json(silent=True) or {}).get("email", "user@example.com")
    began = time.monotonic()
    refused_after_check = False
    if not LOGIN_LIMITER.is_rate_limited(email):
        if LOGIN_LIMITER.increment_rate_limit(email) is not False:
            return jsonify(result="success", began=began, ended=time.monotonic()), 200
        refused_after_check = True
    retry_after = LOGIN_LIMITER.seconds_until_available(email)
    return (jsonify(code="too_many_requests", message="rate_limited", status=429,
                    refused_after_check=refused_after_check),
            429, {"Retry-After": str(retry_after)})


@app.get("/_key_cooldown/<config_id>")
def key_cooldown(config_id):
    """What Dify's console shows for a key (get_config_in_cooldown_and_ttl), in this worker."""
    cooling, ttl = LB_MODEL_MANAGER.get_config_in_cooldown_and_ttl(TENANT, PROVIDER, MODEL_TYPE,
                                                                   MODEL, config_id)
    return jsonify(worker=os.getpid(), cooling=bool(cooling), ttl=int(ttl))


@app.get("/_failure_mode")
def failure_mode():
    """This worker's cluster-scope decisions taken by the failure mode (Redis not answering in
    time): the sluice setups' Governor counts them; the peer has none."""
    return jsonify(worker=os.getpid(), decisions=failure_mode_decisions())


@app.get("/health")
def health():
    return "ok"
