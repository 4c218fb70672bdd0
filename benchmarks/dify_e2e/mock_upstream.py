"""A mock OpenAI-compatible upstream for the Dify end-to-end benchmark (issue 17).

``POST /v1/chat/completions`` with ``Authorization: Bearer <key>`` and an ``X-App`` header
(the Dify app the call is for):

* ``"stream": true``: an SSE stream of ``chunks`` chunks ``gap`` seconds apart, then
  ``data: [DONE]`` (``chunks`` and ``gap`` from the body, defaults 8 and 0.02 s);
* otherwise one JSON completion after ``gap * chunks`` seconds;
* while a storm is on for the key: 429 with ``Retry-After`` and an OpenAI-style error body.

Control (loopback, JSON):

* ``POST /_storm {"key": k, "seconds": s}``: key ``k`` answers 429 for the next ``s`` seconds;
* ``POST /_reset_max``: starts a new "most calls at once" window for every app;
* ``GET /_stats``: per app ``open`` (calls in flight now) and ``most`` (most at once since the
  last reset), per key ``calls`` and ``rate_limited``.

It counts a call as open from the moment its request is read to just before its last write (or
until the app hangs up). The app holds its slot from before it sends the request until after it
has read that last byte, so each call's open interval lies inside its slot: ``most`` above the
cap means the cap let more through, never an artefact of the counting.

Run it with ``python mock_upstream.py <port-file>``: it binds a free loopback port and writes
it to the file; the benchmark runs it as its own process so that its threads never compete
with the client for a GIL.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class _State:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.open = {}          # app -> calls in flight
        self.most = {}          # app -> most in flight since the last reset
        self.calls = {}         # key -> calls
        self.rate_limited = {}  # key -> 429s answered
        self.storms = {}        # key -> monotonic end of its storm

    def enter(self, app: str, key: str) -> bool:
        """Counts the call in; False when the key is in a storm (the call is not opened)."""
        with self.lock:
            self.calls[key] = self.calls.get(key, 0) + 1
            if time.monotonic() < self.storms.get(key, 0.0):
                self.rate_limited[key] = self.rate_limited.get(key, 0) + 1
                return False
            now_open = self.open.get(app, 0) + 1
            self.open[app] = now_open
            self.most[app] = max(self.most.get(app, 0), now_open)
            return True

    def leave(self, app: str) -> None:
        with self.lock:
            self.open[app] -= 1


STATE = _State()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.0"  # one call per connection

    def log_message(self, *args) -> None:
        pass

    def _json(self, status: int, payload, headers=()) -> None:
        body = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        for name, value in headers:
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        if self.path == "/_stats":
            with STATE.lock:
                self._json(200, {"open": STATE.open, "most": STATE.most, "calls": STATE.calls,
                                 "rate_limited": STATE.rate_limited})
        else:
            self._json(404, {"error": {"message": "no such path"}})

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length) or b"{}") if length else {}
        if self.path == "/_storm":
            with STATE.lock:
                STATE.storms[body["key"]] = time.monotonic() + float(body["seconds"])
            self._json(200, {"ok": True})
            return
        if self.path == "/_reset_max":
            with STATE.lock:
                STATE.most = dict(STATE.open)
            self._json(200, {"ok": True})
            return
        if self.path != "/v1/chat/completions":
            self._json(404, {"error": {"message": "no such path"}})
            return
        key = (self.headers.get("Authorization") or "").partition(" ")[2]
        app = self.headers.get("X-App") or "-"
        if not STATE.enter(app, key):
            self._json(429, {"error": {"message": f"Rate limit reached for {key}",
                                       "type": "requests", "code": "rate_limit_exceeded"}},
                       headers=[("Retry-After", "20")])
            return
        chunks, gap = int(body.get("chunks", 8)), float(body.get("gap", 0.02))
        left = []

        def leave() -> None:  # once, just before the call's last write
            if not left:
                left.append(True)
                STATE.leave(app)

        try:
            if body.get("stream"):
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.end_headers()
                for i in range(chunks):
                    event = {"object": "chat.completion.chunk",
                             "choices": [{"index": 0, "delta": {"content": f"t{i} "}}]}
                    self.wfile.write(b"data: " + json.dumps(event).encode() + b"\n\n")
                    self.wfile.flush()
                    time.sleep(gap)
                leave()
                self.wfile.write(b"data: [DONE]\n\n")
            else:
                time.sleep(gap * chunks)
                leave()
                self._json(200, {"object": "chat.completion", "choices": [
                    {"index": 0, "message": {"role": "assistant", "content": "answer"}}],
                    "usage": {"prompt_tokens": 10, "completion_tokens": chunks,
                              "total_tokens": 10 + chunks}})
        except OSError:  # the app hung up (its worker was killed, or the client went away)
            pass
        finally:
            leave()


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256


def main() -> None:
    server = _Server(("127.0.0.1", 0), _Handler)
    with open(sys.argv[1], "w") as f:
        f.write(str(server.server_address[1]))
    server.serve_forever()


if __name__ == "__main__":
    main()
