"""A scriptable mock of an OpenAI-compatible provider, for the fallback chaos tests and benchmarks.

Every path ``/<target>/v1/chat/completions`` is one target (a provider, a model). What a target
does is scripted over HTTP (``POST /_control/<target>``, JSON) or with ``MockOpenAI.script``:

    mode "ok"            200; a JSON completion, or with "stream": true an SSE stream of
                         `chunks` chunks ("data: {...}" events, then "data: [DONE]")
    mode "error"         `status` (default 500) with an OpenAI-style error body
    mode "rate_limit"    429 with "Retry-After: <retry_after>"
    mode "hang"          sleeps `hang` seconds before answering (the client times out first)
    mode "reset"         closes the connection without a response
    mode "cut_stream"    streams the first chunk, then closes the connection mid-stream
    "error_rate": p      with mode "ok": each call fails with a 500 with probability p (a
                         random stream seeded by "seed", default 1: the same run every time)
    "latency": s         every answer waits s seconds first

``GET /_stats`` returns the calls per target. ``MockOpenAI`` runs the server in a child process
(so its threads never compete with the test's GIL), on a free loopback port, and stops it.

Client side: ``chat(port, target, timeout, stream)`` posts with ``http.client`` and raises
``sluice.AttemptFailed`` for an error status, ``TimeoutError``, ``ConnectionResetError`` or
``http.client.RemoteDisconnected`` as the transport fails; with ``stream=True`` it returns an
iterator of the SSE data payloads that raises ``ConnectionResetError`` if the stream ends
before ``[DONE]``.
"""

from __future__ import annotations

import http.client
import json
import random
import os
import socket
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class _State:
    def __init__(self):
        self.lock = threading.Lock()
        self.scripts = {}
        self.calls = {}
        self.rngs = {}


STATE = _State()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.0"  # one request per connection: a cut is a cut

    def log_message(self, *args):  # quiet
        pass

    def _json(self, status, payload, headers=()):
        body = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        for name, value in headers:
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        if self.path == "/_stats":
            with STATE.lock:
                self._json(200, dict(STATE.calls))
        else:
            self._json(404, {"error": {"message": "no such path"}})

    def do_POST(self):
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        parts = self.path.strip("/").split("/")
        if parts[0] == "_control":
            with STATE.lock:
                if parts[1] == "_reset":
                    STATE.scripts.clear()
                    STATE.calls.clear()
                    STATE.rngs.clear()
                else:
                    script = json.loads(raw or b"{}")
                    STATE.scripts[parts[1]] = script
                    STATE.rngs[parts[1]] = random.Random(script.get("seed", 1))
            self._json(200, {"ok": True})
            return
        target = parts[0]
        with STATE.lock:
            n = STATE.calls.get(target, 0)
            STATE.calls[target] = n + 1
            script = dict(STATE.scripts.get(target, {}))
            rate = script.get("error_rate", 0.0)
            fails = bool(rate) and STATE.rngs[target].random() < rate
        request = json.loads(raw or b"{}")
        if script.get("latency"):
            time.sleep(script["latency"])
        mode = script.get("mode", "ok")
        if mode == "ok" and fails:
            mode = "error"
        if mode == "error":
            status = script.get("status", 500)
            self._json(status, {"error": {"message": "mock failure", "type": "server_error",
                                          "code": script.get("code")}})
        elif mode == "rate_limit":
            self._json(429, {"error": {"message": "rate limited", "type": "rate_limit_error"}},
                       headers=[("Retry-After", str(script.get("retry_after", 1)))])
        elif mode == "hang":
            time.sleep(script.get("hang", 30))
            self._json(200, {"late": True})
        elif mode == "reset":
            self.connection.shutdown(socket.SHUT_RDWR)
            self.close_connection = True
        elif request.get("stream"):
            self._stream(target, script.get("chunks", 5), cut=mode == "cut_stream")
        else:
            self._json(200, {"id": f"{target}-{n}", "object": "chat.completion",
                             "choices": [{"index": 0, "message": {"role": "assistant",
                                                                  "content": f"{target} answer"}}]})

    def _stream(self, target, chunks, cut):
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.end_headers()
        for i in range(chunks):
            event = {"object": "chat.completion.chunk",
                     "choices": [{"index": 0, "delta": {"content": f"{target}-{i} "}}]}
            self.wfile.write(b"data: " + json.dumps(event).encode() + b"\n\n")
            self.wfile.flush()
            if cut:  # one chunk out, then the connection dies
                self.connection.shutdown(socket.SHUT_RDWR)
                self.close_connection = True
                return
        self.wfile.write(b"data: [DONE]\n\n")


class _Server(ThreadingHTTPServer):
    request_queue_size = 256  # the default 5 resets connections under a few dozen clients
    daemon_threads = True


def serve(port: int = 0) -> None:
    server = _Server(("127.0.0.1", port), _Handler)
    print(server.server_address[1], flush=True)
    server.serve_forever()


class MockOpenAI:
    """The mock server in a child process; a context manager."""

    def __init__(self) -> None:
        self.process = subprocess.Popen([sys.executable, os.path.abspath(__file__)],
                                        stdout=subprocess.PIPE, text=True)
        self.port = int(self.process.stdout.readline())

    def __enter__(self) -> "MockOpenAI":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(timeout=10)

    def _post(self, path: str, payload: dict) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
        conn.request("POST", path, body=json.dumps(payload))
        conn.getresponse().read()
        conn.close()

    def script(self, target: str, **script) -> None:
        """Sets what `target` does (see the module docstring)."""
        self._post(f"/_control/{target}", script)

    def reset(self) -> None:
        """Forgets every script and count."""
        self._post("/_control/_reset", {})

    def calls(self) -> dict:
        """Calls per target so far."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
        conn.request("GET", "/_stats")
        stats = json.loads(conn.getresponse().read())
        conn.close()
        return stats


def chat(port: int, target: str, timeout=None, stream: bool = False, model: str = "m"):
    """Posts a chat completion to the mock; see the module docstring for what it raises."""
    import sluice

    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    body = json.dumps({"model": model, "stream": stream,
                       "messages": [{"role": "user", "content": "hello"}]})
    conn.request("POST", f"/{target}/v1/chat/completions", body=body,
                 headers={"Content-Type": "application/json"})
    response = conn.getresponse()
    if response.status >= 400:
        error_body = response.read()
        retry_after = sluice.parse_retry_after(response.getheader("Retry-After") or "")
        conn.close()
        raise sluice.AttemptFailed(response.status, error_body=error_body,
                                   retry_after=retry_after or 0.0)
    if not stream:
        try:
            return json.loads(response.read())
        finally:
            conn.close()
    return _events(conn, response)


def _events(conn, response):
    try:
        while True:
            line = response.readline()
            if not line:
                raise ConnectionResetError("the stream ended before [DONE]")
            line = line.strip()
            if not line.startswith(b"data: "):
                continue
            data = line[len(b"data: "):]
            if data == b"[DONE]":
                return
            yield data
    finally:
        conn.close()


if __name__ == "__main__":
    serve(int(sys.argv[1]) if len(sys.argv) > 1 else 0)
