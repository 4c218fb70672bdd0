"""A bounded load client for the Dify end-to-end benchmark (issue 17): `clients` threads, each
sending requests back to back for `seconds`, a seeded mix of streaming chat, blocking chat and
blocking workflow runs (or streaming workflow runs, or login attempts). Records per request:
when it started, its latency (to the last byte), its status, whether a 429 carried Retry-After
(and Dify's body code), whether a 200 stream ended with ``[DONE]``, and for a login attempt
when it was admitted. Standard library only (http.client), loopback only.
"""

from __future__ import annotations

import http.client
import json
import random
import threading
import time
from dataclasses import dataclass, field
from typing import List, Optional

ROUTES = (("/v1/chat-messages", "streaming"), ("/v1/chat-messages", "blocking"),
          ("/v1/workflows/run", "blocking"))
MIX = (0.6, 0.25, 0.15)  # streaming chat, blocking chat, workflow run
STREAMING_WORKFLOWS = (("/v1/workflows/run", "streaming"),)  # with mix=(1.0,)


@dataclass
class Result:
    started: float            # seconds since the load began
    latency: float            # seconds to the last byte (or to the failure)
    status: int               # HTTP status; 0: no answer (connection refused, reset, timeout)
    route: str
    retry_after: bool = False  # a 429 with a Retry-After >= 1
    code: str = ""             # the 429 body's code (too_many_requests, rate_limit_error)
    complete: bool = False     # a 200 with its whole answer (a stream up to [DONE])
    worker: str = ""
    admitted: tuple = ()       # a login attempt's 200: (monotonic before, after) the admission
    refused_after_check: bool = False  # a login 429 from a record refused after a passed check


@dataclass
class Load:
    results: List[Result] = field(default_factory=list)
    seconds: float = 0.0


LOGIN = "/console/api/login"


def request(port: int, app_key: str, route: str, mode: str, *, chunks: int = 8,
            gap: float = 0.02, timeout: float = 30.0) -> Result:
    """One call to the app (latency measured from the request to the answer's last byte)."""
    started = time.monotonic()
    result = Result(started, 0.0, 0, f"{route}:{mode}")
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        connection.request("POST", route, body=json.dumps(
            {"inputs": {}, "query": "hi", "response_mode": mode, "user": "bench",
             "chunks": chunks, "gap": gap}),
            headers={"Authorization": f"Bearer {app_key}", "Content-Type": "application/json"})
        response = connection.getresponse()
        result.status = response.status
        result.worker = response.getheader("X-Worker") or ""
        body = response.read()
        if response.status == 429:
            value = response.getheader("Retry-After")
            result.retry_after = value is not None and value.isdigit() and int(value) >= 1
            try:
                result.code = json.loads(body).get("code", "")
            except ValueError:
                pass
        elif response.status == 200:
            result.complete = body.rstrip().endswith(b"data: [DONE]") if mode == "streaming" \
                else b'"answer"' in body
        if route == LOGIN and response.status in (200, 429):  # Dify's JSON either way
            answer = json.loads(body)
            result.complete = response.status == 200
            result.admitted = (answer["began"], answer["ended"]) if result.complete else ()
            result.refused_after_check = bool(answer.get("refused_after_check"))
    except (OSError, http.client.HTTPException):
        result.status = result.status if result.status and result.status != 200 else 0
    finally:
        connection.close()
        result.latency = time.monotonic() - started
    return result


def run(port: int, app_key: str, *, clients: int, seconds: float, seed: int,
        chunks: int = 8, gap: float = 0.02, routes=ROUTES, mix=MIX, pace: float = 0.0) -> Load:
    """`clients` threads for `seconds` (each finishes the request it started); each thread has
    its own random stream seeded from `seed`, so every setup gets the same sequence; `routes`
    ((route, response_mode) pairs, the login route's mode is ignored) drawn with weights `mix`.
    `pace`: seconds a thread waits after a 429 (0: straight on, as an impatient client)."""
    load = Load()
    lock = threading.Lock()
    begin = time.monotonic()
    deadline = begin + seconds

    def client(index: int) -> None:
        rng = random.Random(seed * 1000 + index)
        while time.monotonic() < deadline:
            route, mode = rng.choices(routes, weights=mix)[0]
            result = request(port, app_key, route, mode, chunks=chunks, gap=gap)
            result.started -= begin
            with lock:
                load.results.append(result)
            if result.status != 200 and pace:
                time.sleep(pace)

    threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=seconds + 60)
    load.seconds = time.monotonic() - begin
    return load


def percentile(values: List[float], q: float) -> Optional[float]:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]
