"""sluice.MetricsRegistry and sluice.PrometheusCollector: the rendered text, prometheus_client
integration, host scope across forked processes, and hostile arguments (the risky ones in a
subprocess, so that a crash is a failure rather than the end of the run)."""

import math
import os
import subprocess
import sys

import pytest

import sluice

from prometheus_client import CollectorRegistry, generate_latest  # noqa: E402
from prometheus_client.parser import text_string_to_metric_families  # noqa: E402


def test_render_counts_gauges_and_histograms():
    registry = sluice.MetricsRegistry()
    requests = registry.counter("requests_total", "Requests.", {"route": "/chat", "code": "200"})
    requests.add()
    requests.add(4)
    inflight = registry.gauge("inflight", "In flight.", {})
    inflight.add(3)
    inflight.add(-1)
    latency = registry.histogram("decide_seconds", "Decisions.", {"op": "rate"}, bounds=[0.5, 1.0])
    for v in (0.1, 0.5, 2.0):
        latency.observe(v)
    assert requests.value == 5 and inflight.value == 2
    assert latency.count == 3 and latency.sum == pytest.approx(2.6)
    text = registry.render()
    assert 'requests_total{code="200",route="/chat"} 5\n' in text
    assert "# TYPE inflight gauge\ninflight 2\n" in text
    assert 'decide_seconds_bucket{op="rate",le="0.5"} 2\n' in text
    assert 'decide_seconds_bucket{op="rate",le="+Inf"} 3\n' in text
    assert 'decide_seconds_count{op="rate"} 3\n' in text
    assert "sluice_metrics_dropped_series_total 0\n" in text
    # prometheus_client's own parser reads it back.
    families = {f.name: f for f in text_string_to_metric_families(text)}
    assert families["requests"].type == "counter"
    assert families["decide_seconds"].type == "histogram"


def test_default_bounds_and_labels_optional():
    registry = sluice.MetricsRegistry()
    h = registry.histogram("h_seconds", "H.")
    h.observe(3e-6)
    assert 'h_seconds_bucket{le="5e-06"} 1\n' in registry.render()
    assert 'h_seconds_bucket{le="1e-07"} 0\n' in registry.render()


def test_collector_in_a_prometheus_client_registry():
    registry = sluice.MetricsRegistry()
    registry.counter("sluice_decisions_total", "Decisions.", {"outcome": "allowed"}).add(7)
    registry.histogram("sluice_decision_seconds", "Latency.", {}).observe(1e-6)
    prom = CollectorRegistry()
    prom.register(sluice.PrometheusCollector(registry))
    out = generate_latest(prom).decode()
    assert 'sluice_decisions_total{outcome="allowed"} 7.0' in out
    assert "sluice_decision_seconds_count 1.0" in out
    assert 'sluice_decision_seconds_bucket{le="1e-06"} 1.0' in out
    # Each scrape renders anew.
    registry.counter("sluice_decisions_total", "Decisions.", {"outcome": "allowed"}).add()
    assert 'sluice_decisions_total{outcome="allowed"} 8.0' in generate_latest(prom).decode()


def test_collector_takes_anything_with_render_or_metrics_text():
    class Source:
        def metrics_text(self):
            return "# HELP x_total X.\n# TYPE x_total counter\nx_total 2\n"

    prom = CollectorRegistry()
    prom.register(sluice.PrometheusCollector(Source()))
    assert "x_total 2.0" in generate_latest(prom).decode()
    with pytest.raises(TypeError, match="render\\(\\) or metrics_text\\(\\)"):
        sluice.PrometheusCollector(object())
    with pytest.raises(TypeError):
        sluice.PrometheusCollector(None)


def test_same_series_same_handle_and_checks():
    registry = sluice.MetricsRegistry()
    a = registry.counter("c_total", "C.", {"x": "1", "y": "2"})
    b = registry.counter("c_total", "C.", {"y": "2", "x": "1"})
    a.add(2)
    assert b.value == 2 and registry.series_count == 1
    with pytest.raises(sluice.InvalidArgument, match="registered as a counter, not a gauge"):
        registry.gauge("c_total", "C.", {})
    with pytest.raises(sluice.InvalidArgument, match="help"):
        registry.counter("c_total", "Other.", {})
    with pytest.raises(sluice.InvalidArgument, match="name must be a Prometheus metric name"):
        registry.counter("bad name", "C.", {})
    with pytest.raises(sluice.InvalidArgument, match="reserved"):
        registry.counter("ok_total", "C.", {"__x": "1"})
    with pytest.raises(sluice.InvalidArgument, match="n must be >= 0"):
        a.add(-1)


def test_max_series_gives_noop_handles_and_counts_them():
    registry = sluice.MetricsRegistry(max_series=1)
    kept = registry.counter("c_total", "C.", {"k": "1"})
    dropped = registry.counter("c_total", "C.", {"k": "2"})
    assert kept and not dropped
    dropped.add(5)
    assert dropped.value == 0
    assert registry.dropped_series == 1
    assert "sluice_metrics_dropped_series_total 1\n" in registry.render()


def test_host_scope_forked_children_add_into_one_region(region):
    registry = sluice.MetricsRegistry(shared_region=region)
    counter = registry.counter("jobs_total", "Jobs.", {})
    pids = []
    for i in range(4):
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child
            try:
                for _ in range(1000):
                    counter.add()
                sluice.MetricsRegistry(shared_region=region).gauge(
                    "worker_up", "Up.", {"worker": str(i)}).set(1)
            finally:
                os._exit(0)
        pids.append(pid)
    for pid in pids:
        _, status = os.waitpid(pid, 0)
        assert status == 0
    assert counter.value == 4000
    text = sluice.MetricsRegistry(shared_region=region).render()  # another registry, same host
    assert "jobs_total 4000\n" in text
    for i in range(4):
        assert f'worker_up{{worker="{i}"}} 1\n' in text


def test_host_scope_refuses_another_max_series(region):
    sluice.MetricsRegistry(shared_region=region, max_series=16)
    with pytest.raises(sluice.FailedPrecondition, match="max_series=16"):
        sluice.MetricsRegistry(shared_region=region, max_series=32)


# ---- hostile arguments ------------------------------------------------------------------------

def _documented(fn):
    """Calls fn: it returns, or raises TypeError or a sluice.Error, nothing else."""
    try:
        fn()
    except (TypeError, sluice.Error):
        pass


@pytest.mark.parametrize("args", [
    dict(shared_region=None), dict(max_series=None), dict(max_series="1"), dict(max_series=0),
    dict(max_series=-1), dict(max_series=2**63), dict(max_series=2**64), dict(max_series=math.nan),
    dict(shared_region="a/b"), dict(shared_region="\ud800"), dict(shared_region="x" * 10000),
])
def test_hostile_constructor_arguments(args):
    with pytest.raises((TypeError, sluice.InvalidArgument)):
        sluice.MetricsRegistry(**args)


@pytest.mark.parametrize("name, help_, labels", [
    (None, "h", {}), ("n", None, {}), ("n", "h", []), ("n", "h", {"k": None}), ("n", "h", {1: "v"}),
    ("n", "h", {"k": 5}), ("n", "h", "k=v"), (5, "h", {}), ("", "h", {}), ("n", b"h", {}),
    ("n", "h", {"\ud800": "v"}),
])
def test_hostile_series_arguments_raise_documented_errors(name, help_, labels):
    registry = sluice.MetricsRegistry()
    for make in (registry.counter, registry.gauge, registry.histogram):
        with pytest.raises((TypeError, sluice.InvalidArgument)):
            make(name, help_, labels)


def test_label_values_of_any_bytes_render_as_valid_utf8():
    registry = sluice.MetricsRegistry()
    registry.counter("c_total", "Help \udcff with\nnewline \\ .",
                     {"surrogate": "\udcff\ud800", "raw": b"\xff\xfe\x00", "quote": '"\\\n'}).add()
    text = registry.render()
    text.encode("utf-8")  # no surrogates left
    assert 'quote="\\"\\\\\\n"' in text
    assert "raw=\"\ufffd\ufffd\x00\"" in text
    families = list(text_string_to_metric_families(text))
    assert any(f.name == "c" for f in families)


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf, -1e308, 1e308, 0.0, -0.0])
def test_hostile_observations(value):
    registry = sluice.MetricsRegistry()
    h = registry.histogram("h", "H.", {}, bounds=[1.0])
    h.observe(value)
    assert h.count == (0 if math.isnan(value) else 1)
    list(text_string_to_metric_families(registry.render()))  # still parses


@pytest.mark.parametrize("bad", [None, "1", [], math.nan, 2**63, 2**64, -(2**63) - 1, object()])
def test_hostile_numbers_to_handles(bad):
    registry = sluice.MetricsRegistry()
    counter = registry.counter("c_total", "C.", {})
    gauge = registry.gauge("g", "G.", {})
    hist = registry.histogram("h", "H.", {})
    for call in (counter.add, gauge.add, gauge.set):
        with pytest.raises((TypeError, sluice.InvalidArgument)):
            call(bad)
    if not isinstance(bad, int) and bad is not math.nan:
        with pytest.raises(TypeError):
            hist.observe(bad)


def test_extreme_ints_wrap_and_gauges_take_int64_range():
    registry = sluice.MetricsRegistry()
    gauge = registry.gauge("g", "G.", {})
    gauge.set(2**63 - 1)
    assert gauge.value == 2**63 - 1
    gauge.set(-(2**63))
    assert f"g {-(2**63)}\n" in registry.render()
    counter = registry.counter("c_total", "C.", {})
    counter.add(2**63 - 1)
    assert counter.value == 2**63 - 1


@pytest.mark.parametrize("bounds", [[], [1, 1], [2, 1], [math.nan], [math.inf], ["1"], [None],
                                    "1,2", 5, [1.0] * 300])
def test_hostile_bounds(bounds):
    registry = sluice.MetricsRegistry()
    with pytest.raises((TypeError, sluice.InvalidArgument)):
        registry.histogram("h", "H.", {}, bounds)


RISKY = r"""
import gc, os, sys, threading
import sluice
from prometheus_client import CollectorRegistry, generate_latest

# A handle outliving its registry keeps the memory it points into.
registry = sluice.MetricsRegistry(shared_region=sys.argv[1], max_series=64)
counter = registry.counter("c_total", "C.", {"k": "v"})
hist = registry.histogram("h", "H.", {})
del registry
gc.collect()
counter.add(3)
hist.observe(1e-6)
assert counter.value == 3 and hist.count == 1

# A huge label value, a huge help, many labels: documented errors or dropped, never a crash.
r = sluice.MetricsRegistry(max_series=4)
for labels in ({"k": "x" * (1 << 20)}, {f"l{i}": "v" for i in range(5000)}):
    try:
        r.counter("big_total", "B.", labels)
    except sluice.InvalidArgument:
        pass
try:
    r.counter("help_total", "h" * (1 << 20), {})
except sluice.InvalidArgument:
    pass
for i in range(100):
    r.counter("many_total", "M.", {"i": str(i)}).add()
assert r.dropped_series >= 96

# Threads registering and rendering at once while the process forks.
r2 = sluice.MetricsRegistry()
stop = threading.Event()
def work(n):
    while not stop.is_set():
        r2.counter("t_total", "T.", {"t": str(n)}).add()
        r2.render()
threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
for t in threads: t.start()
for _ in range(20):
    pid = os.fork()
    if pid == 0:
        r2.counter("t_total", "T.", {"t": "child"}).add()
        assert 't_total{t="child"} 1' in r2.render()
        os._exit(0)
    assert os.waitpid(pid, 0)[1] == 0
stop.set()
for t in threads: t.join()
prom = CollectorRegistry()
prom.register(sluice.PrometheusCollector(r2))
generate_latest(prom)
print("ok")
"""


def test_risky_cases_in_a_subprocess(region):
    done = subprocess.run([sys.executable, "-c", RISKY, region], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr[-4000:]
    assert done.stdout.strip() == "ok"
