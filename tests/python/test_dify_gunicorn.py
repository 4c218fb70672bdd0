"""sluice.dify under Gunicorn with gevent workers, as Dify deploys its api: three worker
processes, each with its own sluice.dify RateLimit over one host region, stream SSE answers from
a mock upstream; the upstream counts the streams open at once. Each worker takes two
connections at a time, so the streams land in several processes.

* The app cap holds across workers: with 24 clients racing for an app capped at 3, the upstream
  never sees more than 3 streams at once (Dify's HLEN-then-HSET admitted 7-15 of 5, issue
  #39177), each refusal is Dify's 429 shape with Retry-After, and nothing stays held after.
* A worker SIGKILLed mid-stream leaves its slots held until their lease ends, then they come
  back: nothing leaks for good. Across real processes the lease cannot run on a ManualClock, so
  this test uses a 2 s lease and polls, bounded, for the slots to come back.

Loopback only; Gunicorn and the upstream are started and stopped by the tests, every wait is
bounded.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import textwrap
import threading
import time
import urllib.error
import urllib.request
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest

from gunicorn_support import remove_regions, start_gunicorn, stop_gunicorn

pytest.importorskip("gunicorn")
pytest.importorskip("flask")
pytest.importorskip("gevent")

WORKERS = 3

APP = textwrap.dedent("""
    import os
    import socket

    from flask import Flask, Response, request

    import sluice
    import sluice.dify

    # Each worker runs this after Gunicorn forked it: one Governor per worker, one host region.
    sluice.dify.configure(sluice.dify.AppConcurrency(sluice.Governor(sluice.dify.policy(
        "host", name=os.environ["SLUICE_TEST_NAME"], lease=float(os.environ["SLUICE_TEST_LEASE"])))))
    UPSTREAM = ("127.0.0.1", int(os.environ["SLUICE_TEST_UPSTREAM"]))
    CAP = int(os.environ["SLUICE_TEST_CAP"])
    app = Flask(__name__)


    def relay():
        # The model call: a stream from the upstream, relayed as SSE (gevent's patched socket).
        with socket.create_connection(UPSTREAM, timeout=60) as upstream:
            for line in upstream.makefile("rb"):
                yield b"data: " + line.rstrip(b"\\n") + b"\\n\\n"


    @app.post("/v1/chat-messages")
    def chat_messages():
        limit = sluice.dify.RateLimit(request.args["app"], CAP)
        try:
            request_id = limit.enter()
        except sluice.dify.AppInvokeQuotaExceededError as error:
            return sluice.dify.quota_exceeded_response(error)
        return Response(limit.generate(relay(), request_id), mimetype="text/event-stream",
                        headers={"X-Worker": str(os.getpid())})


    @app.get("/health")
    def health():
        return "ok"
    """)


class MockUpstream:
    """A TCP server that answers each connection with `chunks` lines, `gap` seconds apart (or,
    while `hold` is set, keeps it open), counting the connections open at once."""

    def __init__(self, chunks: int = 5, gap: float = 0.05) -> None:
        self.chunks, self.gap = chunks, gap
        self.hold = threading.Event()
        self.lock = threading.Lock()
        self.open = self.most = self.served = 0
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self.stopping = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self.stopping:
            try:
                conn, _ = self.server.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        with self.lock:
            self.open += 1
            self.most = max(self.most, self.open)
        try:
            with conn:
                for i in range(self.chunks):
                    conn.sendall(json.dumps({"chunk": i}).encode() + b"\n")
                    time.sleep(self.gap)
                deadline = time.monotonic() + 60
                while self.hold.is_set() and time.monotonic() < deadline:
                    time.sleep(0.02)
        except OSError:
            pass
        finally:
            with self.lock:
                self.open -= 1
                self.served += 1

    def close(self) -> None:
        self.stopping = True
        self.hold.clear()
        self.server.close()


def post_stream(url: str, timeout: float = 60.0):
    """(status, headers, body) of a POST whose SSE body is read to its end."""
    req = urllib.request.Request(url, data=b"{}", method="POST")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as response:
            return response.status, dict(response.headers), response.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read().decode()


@pytest.fixture
def region_name():
    name = f"pytest-dify-gunicorn-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    yield name
    remove_regions(name)


@pytest.fixture
def upstream():
    server = MockUpstream()
    yield server
    server.close()


def start(tmp_path, region_name, upstream, *, cap: int, lease: float):
    (tmp_path / "dify_shaped_app.py").write_text(APP)
    env = dict(SLUICE_TEST_NAME=region_name, SLUICE_TEST_LEASE=str(lease),
               SLUICE_TEST_UPSTREAM=str(upstream.port), SLUICE_TEST_CAP=str(cap))
    return start_gunicorn(tmp_path, "dify_shaped_app:app", env, workers=WORKERS,
                          worker_connections=2)


def test_the_app_cap_holds_across_gevent_workers(tmp_path, region_name, upstream):
    server, base = start(tmp_path, region_name, upstream, cap=3, lease=600)
    try:
        url = base + "/v1/chat-messages?app=app-1"
        with ThreadPoolExecutor(max_workers=24) as pool:
            answers = list(pool.map(lambda _: post_stream(url), range(24)))
        statuses = [status for status, _, _ in answers]
        assert set(statuses) <= {200, 429}, statuses
        assert upstream.most <= 3, upstream.most  # never above the cap, in any worker
        assert upstream.most == 3  # the clients did race for it
        assert statuses.count(200) == upstream.served
        for status, headers, body in answers:
            if status == 200:
                assert body.count("data: ") == upstream.chunks  # each stream relayed whole
            else:
                error = json.loads(body)
                assert error["code"] == "too_many_requests" and error["status"] == 429
                assert "maximum concurrent requests allowed for app-1 is 3" in error["message"]
                assert int(headers["Retry-After"]) >= 1
        workers = {headers["X-Worker"] for status, headers, _ in answers if status == 200}
        assert len(workers) >= 2, workers  # admitted in several processes, else "across" is moot
        # Every slot came back: three streams at once are admitted again.
        with ThreadPoolExecutor(max_workers=3) as pool:
            again = list(pool.map(lambda _: post_stream(url), range(3)))
        assert [status for status, _, _ in again] == [200, 200, 200]
    finally:
        stop_gunicorn(server)


def test_a_killed_workers_slots_come_back_after_their_lease(tmp_path, region_name, upstream):
    lease = 2.0
    server, base = start(tmp_path, region_name, upstream, cap=2, lease=lease)
    url = base + "/v1/chat-messages?app=app-2"
    try:
        upstream.hold.set()  # the streams stay open until the test lets them go
        heads = []

        def open_stream():
            response = urllib.request.urlopen(urllib.request.Request(url, data=b"{}", method="POST"),
                                              timeout=60)
            heads.append(response)  # headers are in: the stream has its slot

        threads = [threading.Thread(target=open_stream) for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=30)
        assert len(heads) == 2
        status, _, _ = post_stream(url)
        assert status == 429  # both slots held
        # SIGKILL the workers holding them: no exit, no close, no finally runs there.
        for pid in {int(r.headers["X-Worker"]) for r in heads}:
            os.kill(pid, signal.SIGKILL)
        for r in heads:
            r.close()
        upstream.hold.clear()
        killed_at = time.monotonic()
        # Until the lease ends the slots are still held (a respawned worker sees them taken) ...
        held_after_kill = post_stream(url)[0]
        # ... and then they come back, without anyone releasing them.
        deadline = killed_at + lease + 30
        while True:
            status = post_stream(url)[0]
            if status == 200:
                break
            assert time.monotonic() < deadline, "the killed worker's slots never came back"
            time.sleep(0.2)
        if time.monotonic() - killed_at < lease * 0.9:
            # Only possible if the first ask above raced the lease's end on a slow machine.
            pytest.fail(f"admitted {time.monotonic() - killed_at:.1f} s after the kill, before "
                        f"the {lease} s lease ended (held_after_kill={held_after_kill})")
    finally:
        upstream.hold.clear()
        stop_gunicorn(server)
