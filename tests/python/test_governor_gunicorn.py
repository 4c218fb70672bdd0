"""sluice.Governor in host scope under Gunicorn with gevent workers (Dify's deployment): three
worker processes, each with its own Governor over the same shared-memory regions, admit exactly
the tenant's limit between them, and any worker's /metrics shows the host's total.

Each worker takes one connection at a time (--worker-connections 1) so that the requests reach
several processes. Loopback only; Gunicorn is started and stopped by the test, every wait is bounded.
"""

from __future__ import annotations

import os
import textwrap
import urllib.error
import urllib.request
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest

from gunicorn_support import remove_regions, start_gunicorn, stop_gunicorn

pytest.importorskip("gunicorn")
pytest.importorskip("flask")
pytest.importorskip("gevent")

LIMIT = 25
REQUESTS = 60
WORKERS = 3

APP = textwrap.dedent("""
    import os
    import time

    from flask import Flask, request

    import sluice

    # Each worker imports this after Gunicorn forked it: one Governor per worker, one set of
    # host regions for all of them.
    governor = sluice.Governor(os.environ["SLUICE_TEST_POLICY"])
    app = Flask(__name__)


    @app.get("/chat")
    def chat():
        with governor.admit({"tenant": request.args.get("tenant", "")}) as admission:
            if not admission:
                return "slow down", 429, admission.headers()
            time.sleep(0.05)  # the model call (gevent's patched sleep): the worker stays busy
            return "ok", 200, {"X-Worker": str(os.getpid())}


    @app.get("/metrics")
    def metrics():
        return governor.metrics_text(), 200, {"Content-Type": "text/plain; version=0.0.4"}


    @app.get("/health")
    def health():
        return "ok"
    """)


def get(url: str, timeout: float = 30.0):
    """(status, headers, body) of a GET; an HTTP error status is an answer too."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status, dict(response.headers), response.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read().decode()


@pytest.fixture
def policy_name():
    name = f"pytest-gunicorn-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    yield name
    remove_regions(name)


@pytest.fixture
def gunicorn_app(tmp_path, policy_name):
    (tmp_path / "governed_app.py").write_text(APP)
    policy = textwrap.dedent(f"""
        version: 1
        name: {policy_name}
        rules:
          - name: rpd
            key: [tenant]
            requests: [{LIMIT}/1d]
            scope: host
            max_keys: 64
        metrics: {{shared_region: {policy_name}.metrics}}
        """)
    server, base = start_gunicorn(tmp_path, "governed_app:app", {"SLUICE_TEST_POLICY": policy},
                                  workers=WORKERS, worker_connections=1)
    try:
        yield base
    finally:
        stop_gunicorn(server)


def test_gunicorn_gevent_workers_share_the_tenant_limit_exactly(gunicorn_app):
    from test_governor import metric_value

    with ThreadPoolExecutor(max_workers=20) as pool:
        answers = list(pool.map(lambda _: get(gunicorn_app + "/chat?tenant=acme"), range(REQUESTS)))
    statuses = [status for status, _, _ in answers]
    assert statuses.count(200) == LIMIT, statuses
    assert statuses.count(429) == REQUESTS - LIMIT, statuses
    for status, headers, _ in answers:
        if status == 429:
            assert int(headers["Retry-After"]) >= 1
            assert "rpd" in headers["RateLimit-Policy"]
    # One connection per worker, each admitted request held 50 ms, 20 clients at once: the
    # admitted requests were spread over several processes (else "exactly" would prove nothing).
    workers = {headers["X-Worker"] for status, headers, _ in answers if status == 200}
    assert len(workers) >= 2, workers
    assert get(gunicorn_app + "/chat?tenant=other")[0] == 200  # another tenant's own limit

    # Any worker renders the host's total (the metrics region sums every worker's decisions).
    status, _, text = get(gunicorn_app + "/metrics")
    assert status == 200
    assert metric_value(text, "sluice_decisions_total", rule="rpd", result="allowed") == LIMIT + 1
    assert metric_value(text, "sluice_decisions_total", rule="rpd",
                        result="refused") == REQUESTS - LIMIT
