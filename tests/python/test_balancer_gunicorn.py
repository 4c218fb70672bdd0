"""sluice.Balancer's shared routes under Gunicorn with gevent workers (Dify's deployment, issue
15): three worker processes, each with its own prefix-affinity Balancer on one shared_region,
send every turn of a conversation to the replica its first turn went to, whichever worker takes
the turn. Without the shared region (the control), turns that land on another worker move.

Each worker takes one connection at a time (--worker-connections 1) and holds each pick 30 ms,
so the turns reach several processes. Loopback only; Gunicorn is started and stopped by the
test, every wait is bounded.
"""

from __future__ import annotations

import json
import os
import textwrap
import urllib.request
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest

from balancer_support import chat_turns
from gunicorn_support import remove_regions, start_gunicorn, stop_gunicorn

pytest.importorskip("gunicorn")
pytest.importorskip("flask")
pytest.importorskip("gevent")

CONVERSATIONS = 12
TURNS = 4

APP = textwrap.dedent("""
    import json
    import os

    import gevent
    from flask import Flask, request

    import sluice

    # Each worker builds its Balancer after Gunicorn forked it; with a region, one set of host
    # regions for all of them.
    region = os.environ.get("SLUICE_TEST_REGION") or None
    balancer = sluice.Balancer("prefix_affinity", shared_region=region)
    for replica in ("r0", "r1", "r2", "r3"):
        balancer.add_endpoint(replica)
    app = Flask(__name__)


    @app.post("/route")
    def route():
        pick = balancer.pick(request.get_data())
        gevent.sleep(0.03)  # the model call: the worker stays busy, so turns spread over workers
        pick.complete(status=200)
        return json.dumps({"endpoint": pick.endpoint_id, "matched": pick.matched_blocks,
                           "worker": os.getpid()})


    @app.get("/health")
    def health():
        return "ok"
    """)


def _post(url: str, body: bytes) -> dict:
    request = urllib.request.Request(url, data=body, method="POST")
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


def _route_conversations(base: str):
    """Each conversation's turns in order (a turn after the last one's answer), the
    conversations at once: (the endpoint of each turn, matched blocks, worker) per conversation."""
    def conversation(c):
        return [_post(base + "/route", chat_turns(f"g{c}", t)) for t in range(1, TURNS + 1)]

    with ThreadPoolExecutor(max_workers=CONVERSATIONS) as pool:
        return list(pool.map(conversation, range(CONVERSATIONS)))


@pytest.fixture
def app_dir(tmp_path):
    (tmp_path / "routed_app.py").write_text(APP)
    return tmp_path


def _run(app_dir, region):
    server, base = start_gunicorn(app_dir, "routed_app:app", {"SLUICE_TEST_REGION": region},
                                  workers=3, worker_connections=1)
    try:
        return _route_conversations(base)
    finally:
        stop_gunicorn(server)


def test_gunicorn_workers_send_a_conversations_turns_where_its_first_went(app_dir):
    region = f"pytest-routes-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    try:
        shared = _run(app_dir, region)
    finally:
        remove_regions(region)
    workers = {turn["worker"] for turns in shared for turn in turns}
    assert len(workers) >= 2, workers  # else "whichever worker" would prove nothing
    for turns in shared:
        assert {turn["endpoint"] for turn in turns} == {turns[0]["endpoint"]}, turns
        assert all(turn["matched"] > 0 for turn in turns[1:]), turns

    alone = _run(app_dir, "")  # each worker learns alone: the control
    moved = sum(turn["endpoint"] != turns[0]["endpoint"] for turns in alone for turn in turns[1:])
    assert moved > 0, alone
