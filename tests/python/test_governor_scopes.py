"""sluice.Governor in cluster scope (Redis) and host scope (shared memory) across processes, and
its cluster-scope admit under gevent (the hub keeps running while Redis does not answer)."""

from __future__ import annotations

import glob
import multiprocessing
import os
import subprocess
import sys
import textwrap
import uuid

import pytest

import sluice
from gunicorn_support import remove_regions

ATTEMPTS = 30
WORKERS = 4
LIMIT = 50


def cluster_policy(port: int, limit: int = LIMIT, command_timeout: str = "2s",
                   extra_rules: str = "") -> str:
    # A generous command timeout: on a busy machine a 5 ms timeout would deny (on_failure: deny)
    # and the count would come out short for the wrong reason.
    return textwrap.dedent(f"""
        version: 1
        name: pytest-cluster
        stores:
          - {{name: main, host: 127.0.0.1, port: {port}, connect_timeout: 1s,
              command_timeout: {command_timeout}, reconnect_interval: 10ms}}
        rules:
          - name: rpm
            key: [tenant]
            requests: [{limit}/1m]
            scope: cluster
            store: main
            on_failure: deny
        """) + extra_rules


# A token budget and a concurrency cap in cluster scope: settle and release talk to Redis.
HELD_RULES = """\
  - {name: tpm, key: [app], tokens: [100000/1m], scope: cluster, store: main, on_failure: deny}
  - {name: cap, key: [app], concurrency: 4, scope: cluster, store: main, on_failure: deny}
"""


def _admit_many(text: str, results) -> None:
    g = sluice.Governor(text)
    results.put(sum(bool(g.admit({"tenant": "t"})) for _ in range(ATTEMPTS)))


def run_workers(text: str) -> int:
    ctx = multiprocessing.get_context("fork")
    results = ctx.Queue()
    workers = [ctx.Process(target=_admit_many, args=(text, results)) for _ in range(WORKERS)]
    for w in workers:
        w.start()
    try:
        total = sum(results.get(timeout=120) for _ in workers)
    finally:
        for w in workers:
            w.join(timeout=60)
            if w.is_alive():
                w.kill()
    assert all(w.exitcode == 0 for w in workers)
    return total


def test_cluster_scope_is_exact_across_processes(redis_server):
    text = cluster_policy(redis_server.port)
    g = sluice.Governor(text)
    assert g.waits_for_redis is True
    assert run_workers(text) == LIMIT  # 120 attempts from 4 processes, one limit
    refused = g.admit({"tenant": "t"})
    assert not refused and refused.rule == "rpm"
    assert g.admit({"tenant": "other"})


def test_cluster_scope_denies_without_redis():
    # Nothing listens on port 1: on_failure: deny refuses, with the status in no exception.
    g = sluice.Governor(cluster_policy(1, command_timeout="50ms"))
    a = g.admit({"tenant": "t"})
    assert not a


GEVENT_SCRIPT = r"""
from gevent import monkey
monkey.patch_all()

import os, signal, sys, time
import gevent
import sluice

text, redis_pid = sys.argv[1], int(sys.argv[2])
g = sluice.Governor(text)
assert g.waits_for_redis
ticks = []

def ticker():
    while True:
        ticks.append(1)
        gevent.sleep(0.005)

def main():
    assert g.admit({"tenant": "t"}), "Redis up: allowed"
    os.kill(redis_pid, signal.SIGSTOP)
    try:
        before = len(ticks)
        stalled = g.admit({"tenant": "t"})  # waits for the store's command timeout
        during = len(ticks) - before
    finally:
        os.kill(redis_pid, signal.SIGCONT)
    assert not stalled, "on_failure: deny"
    assert during > 0, "the hub was blocked during admit"
    return during

def call_tail():
    # call(): the settle and release after fn returned wait for Redis off the hub.
    deadline = time.monotonic() + 30
    while not g.admit({"tenant": "probe", "app": "probe"}):  # reconnected after SIGCONT
        assert time.monotonic() < deadline, "Redis did not come back"
        gevent.sleep(0.05)
    marks = {}

    def fn(attempt):
        os.kill(redis_pid, signal.SIGSTOP)
        marks["returned"] = len(ticks)
        return {"usage": {"total_tokens": 5}}

    try:
        g.call(fn, {"tenant": "c", "app": "c"}, token_estimate=10)
    finally:
        os.kill(redis_pid, signal.SIGCONT)
    tail = len(ticks) - marks["returned"]
    assert tail > 0, "the hub was blocked during call()'s settle and release"
    return tail

def with_tail():
    # An Admission used directly: settle and the end of the with block wait off the hub too.
    deadline = time.monotonic() + 30
    while not g.admit({"tenant": "probe2", "app": "probe2"}):
        assert time.monotonic() < deadline, "Redis did not come back"
        gevent.sleep(0.05)
    with g.admit({"tenant": "w", "app": "w"}, token_estimate=10) as admission:
        assert admission
        os.kill(redis_pid, signal.SIGSTOP)
        before = len(ticks)
        admission.settle(5)
    os.kill(redis_pid, signal.SIGCONT)
    tail = len(ticks) - before
    assert tail > 0, "the hub was blocked during Admission.settle and the with block's release"
    return tail

t = gevent.spawn(ticker)
during = gevent.spawn(main).get(timeout=60)
tail = gevent.spawn(call_tail).get(timeout=60)
direct = gevent.spawn(with_tail).get(timeout=60)
t.kill()
print("OK", during, tail, direct)
"""


def test_cluster_admit_and_call_do_not_block_the_gevent_hub(redis_server):
    pytest.importorskip("gevent")
    text = cluster_policy(redis_server.port, command_timeout="300ms", extra_rules=HELD_RULES)
    try:
        result = subprocess.run([sys.executable, "-c", GEVENT_SCRIPT, text,
                                 str(redis_server._process.pid)],
                                capture_output=True, text=True, timeout=120)
    finally:
        redis_server.resume()
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.startswith("OK")


# ---- host scope -------------------------------------------------------------------------------

@pytest.fixture
def policy_name():
    """A policy name unique to this test; the regions the Governor made under it are removed
    ("<policy name>.<rule>.<kind>.<digest>", and the metrics region "<policy name>.metrics")."""
    name = f"pytest-gov-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    yield name
    remove_regions(name)


def host_policy(name: str, limit: int = LIMIT) -> str:
    return textwrap.dedent(f"""
        version: 1
        name: {name}
        rules:
          - name: rpd
            key: [tenant]
            requests: [{limit}/1d]
            scope: host
            max_keys: 64
        metrics: {{shared_region: {name}.metrics}}
        """)


def test_host_scope_is_exact_across_forked_processes_and_metrics_sum_them(policy_name):
    from test_governor import metric_value

    text = host_policy(policy_name)
    assert run_workers(text) == LIMIT
    assert glob.glob(f"/dev/shm/sluice.{policy_name}.rpd.req.*"), "the region's name"
    g = sluice.Governor(text)
    assert g.waits_for_redis is False
    assert not g.admit({"tenant": "t"})
    text_out = g.metrics_text()
    attempts = WORKERS * ATTEMPTS
    assert metric_value(text_out, "sluice_decisions_total", rule="rpd", result="allowed") == LIMIT
    assert metric_value(text_out, "sluice_decisions_total", rule="rpd",
                        result="refused") == attempts - LIMIT + 1
