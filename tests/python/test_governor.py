"""sluice.Governor from Python: admission, matching, key limits, tokens, permits, call(), reload,
the policy watcher and metrics (sluice/_governor.py over bind_governor.cc).

Time is a ManualClock wherever a window matters; no test sleeps for a window. The watcher's
start()/stop() cases wait (bounded) for its own thread or greenlet, never for a limit.
"""

from __future__ import annotations

import asyncio
import gc
import os
import subprocess
import sys
import textwrap
import threading
import time

import pytest

import sluice

REQUEST = (b'{"model":"m","messages":[{"role":"system","content":"You are terse."},'
           b'{"role":"user","content":"hello there, how are you today?"}]}')
COMPLETION = (b'{"id":"c1","object":"chat.completion","created":1,"model":"m","choices":'
              b'[{"index":0,"message":{"role":"assistant","content":"hi"},"finish_reason":"stop"}],'
              b'"usage":{"prompt_tokens":20,"completion_tokens":5,"total_tokens":25}}')

RPM3 = """
version: 1
name: pytest
rules:
  - name: tenant-rpm
    key: [tenant]
    requests: [3/1m]
"""


def governor(text: str = RPM3, **options) -> sluice.Governor:
    options.setdefault("clock", sluice.ManualClock(0.0))
    return sluice.Governor(textwrap.dedent(text), **options)


def header_map(pairs):
    return {name: value for name, value in pairs}


def metric_value(text: str, name: str, **labels) -> float:
    """The sample `name` with `labels` in a Prometheus exposition, parsed by prometheus_client."""
    from prometheus_client.parser import text_string_to_metric_families

    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return sample.value
    raise AssertionError(f"no sample {name}{labels} in:\n{text}")


# ---- admission --------------------------------------------------------------------------------

def test_admits_until_refused_with_the_binding_rule_and_its_headers():
    clock = sluice.ManualClock(0.0)
    g = governor(clock=clock)
    assert g.rule_names == ["tenant-rpm"]
    assert g.waits_for_redis is False
    for left in (2, 1, 0):
        a = g.admit({"tenant": "t1"})
        assert a and a.allowed
        assert a.rule == "tenant-rpm"
        assert a.matched_rules == ["tenant-rpm"]
        assert a.decision.remaining == left
    refused = g.admit({"tenant": "t1"})
    assert not refused
    assert refused.rule == "tenant-rpm"
    assert refused.decision.retry_after > 0
    headers = header_map(refused.headers())
    assert "Retry-After" in headers
    assert int(headers["Retry-After"]) >= 1
    assert "tenant-rpm" in headers["RateLimit-Policy"]
    assert "tenant-rpm" in headers["RateLimit"]
    # Another key has its own window; time refills the first.
    assert g.admit({"tenant": "t2"})
    clock.advance(20.0)
    assert g.admit({"tenant": "t1"})
    assert not g.admit({"tenant": "t1"})


def test_a_request_no_rule_matches_is_allowed_with_no_rule():
    g = governor("""
        version: 1
        rules:
          - name: gpt4
            match: {model: gpt-4o}
            requests: [1/1m]
        """)
    a = g.admit({"model": "other"})
    assert a and a.rule == "" and a.matched_rules == []
    assert g.admit({"model": "gpt-4o"})
    assert not g.admit({"model": "gpt-4o"})
    assert g.admit()  # no attributes at all


def test_matches_attributes_headers_lower_cased_and_ip_cidr():
    g = governor("""
        version: 1
        rules:
          - name: free-outside
            match:
              header.X-Plan: free
              api_key: {prefix: app-}
              ip: {cidr: [10.0.0.0/8, "fd00::/8"], negate: true}
            key: api_key
            requests: [1/1m]
        """)

    def admit(**kw):
        return g.admit({"api_key": kw.pop("key", "app-1")}, **kw)

    # Matches: any case of the header's name, an address outside the networks.
    first = admit(headers={"X-PLAN": "free"}, ip="192.0.2.7")
    assert first.matched_rules == ["free-outside"]
    assert not admit(headers={"x-plan": "free"}, ip="192.0.2.8")
    # Does not match: inside 10/8 or fd00::/8, another plan, no header, another key prefix.
    for kw in ({"headers": {"X-Plan": "free"}, "ip": "10.1.2.3"},
               {"headers": {"X-Plan": "free"}, "ip": "fd00::1"},
               {"headers": {"X-Plan": "paid"}, "ip": "192.0.2.7"},
               {"ip": "192.0.2.7"},
               {"headers": {"X-Plan": "free"}, "ip": "192.0.2.7", "key": "sk-1"}):
        a = admit(**kw)
        assert a and a.matched_rules == [], kw
    # The header value is matched as given (values are not lower-cased).
    assert admit(headers={"X-Plan": "FREE"}, ip="192.0.2.7").matched_rules == []


def test_headers_are_matched_only_as_header_attributes():
    g = governor("""
        version: 1
        rules:
          - name: by-plan
            match: {header.x-plan: free}
            requests: [1/1m]
        """)
    assert g.admit({"x-plan": "free"}).matched_rules == []  # an attribute, not a header
    assert g.admit(headers={"X-Plan": "free"}).matched_rules == ["by-plan"]


KEY_LIMITS = """
version: 1
rules:
  - name: tenant-rpm
    key: [tenant]
    requests: [2/1m]
    key_limits:
      - {key: gold, requests: [5/1m]}
      - {key: trial-*, requests: [1/1m]}
"""


def admitted(g, attributes, attempts=10):
    return sum(bool(g.admit(attributes)) for _ in range(attempts))


def test_key_limits_from_the_policy():
    g = governor(KEY_LIMITS)
    assert admitted(g, {"tenant": "gold"}) == 5
    assert admitted(g, {"tenant": "trial-42"}) == 1
    assert admitted(g, {"tenant": "plain"}) == 2


def test_set_and_clear_key_limits():
    clock = sluice.ManualClock(0.0)
    g = governor(KEY_LIMITS, clock=clock)
    g.set_key_limits("tenant-rpm", "plain", requests=[sluice.Window.per_minute(4)])
    assert admitted(g, {"tenant": "plain"}) == 4
    # Kept across a reload that keeps the rule's state (the window stays spent, the limit 4).
    g.reload(textwrap.dedent(KEY_LIMITS) + "  - {name: other, match: {app: x}, key: [app], requests: [1/1m]}\n")
    clock.advance(60.0)
    assert admitted(g, {"tenant": "plain"}) == 4
    g.set_key_limits("tenant-rpm", "gold", requests=[sluice.Window.per_minute(1)])
    assert admitted(g, {"tenant": "gold"}) == 1  # replaces the policy's key limit
    g.clear_key_limits("tenant-rpm", "plain")
    clock.advance(3600.0)
    assert admitted(g, {"tenant": "plain"}) == 2  # back to the rule's
    with pytest.raises(sluice.NotFound, match="no-such-rule"):
        g.set_key_limits("no-such-rule", "k", requests=[sluice.Window.per_minute(1)])
    with pytest.raises(sluice.InvalidArgument):  # the rule has one request window, not two
        g.set_key_limits("tenant-rpm", "k", requests=[sluice.Window.per_minute(1),
                                                      sluice.Window.per_hour(5)])


def test_a_refusal_by_a_later_rule_charges_no_earlier_rule():
    g = governor("""
        version: 1
        rules:
          - name: tenant-rpm
            key: [tenant]
            requests: [5/1m]
          - name: big-model
            match: {model: big}
            key: [tenant]
            requests: [1/1m]
        """)
    assert g.admit({"tenant": "t", "model": "big"})           # tenant-rpm: 1 of 5
    for _ in range(3):
        refused = g.admit({"tenant": "t", "model": "big"})
        assert not refused and refused.rule == "big-model"
    # Were the refusals charged to tenant-rpm, fewer than 4 would be left.
    assert admitted(g, {"tenant": "t", "model": "small"}) == 4


TOKENS = """
version: 1
rules:
  - name: tpm
    key: [tenant]
    tokens: [100/1m]
"""


def test_the_token_estimate_comes_from_the_body():
    g = governor("""
        version: 1
        rules:
          - name: tpm
            key: [tenant]
            tokens: [100000/1m]
        """)
    a = g.admit({"tenant": "t"}, body=REQUEST)
    assert 5 < a.token_estimate < 100
    assert g.admit({"tenant": "t"}, body=REQUEST.decode()).token_estimate == a.token_estimate
    with_max = REQUEST[:-1] + b',"max_tokens":500}'
    assert g.admit({"tenant": "t"}, body=with_max).token_estimate == a.token_estimate + 500
    assert g.admit({"tenant": "t"}, body=REQUEST, token_estimate=7).token_estimate == 7


@pytest.mark.parametrize("settle_with", ["usage", "int"])
def test_settle_gives_back_what_was_not_used(settle_with):
    g = governor(TOKENS)
    a = g.admit({"tenant": "t"}, token_estimate=60)
    assert a and a.token_estimate == 60
    if settle_with == "usage":
        usage = sluice.read_usage(COMPLETION)
        assert usage.total_tokens == 25
        a.settle(usage)
    else:
        a.settle(25)
    a.settle(0)  # only the first settle counts
    # 25 used: 75 left, so another 60 fits (it would not with the estimate still charged).
    assert g.admit({"tenant": "t"}, token_estimate=60)
    assert not g.admit({"tenant": "t"}, token_estimate=60)
    text = g.metrics_text()
    assert metric_value(text, "sluice_tokens_settled_total", rule="tpm") == 25
    assert metric_value(text, "sluice_tokens_refunded_total", rule="tpm") == 35


def test_an_unsettled_release_keeps_the_estimate_charged_and_cancel_gives_it_back():
    g = governor(TOKENS)
    a = g.admit({"tenant": "t"}, token_estimate=60)
    a.release()
    assert not g.admit({"tenant": "t"}, token_estimate=60)  # 60 still charged
    b = g.admit({"tenant": "u"}, token_estimate=60)
    b.cancel()
    assert g.admit({"tenant": "u"}, token_estimate=60)  # the cancelled 60 came back


def test_settle_refuses_what_is_not_a_usage():
    g = governor(TOKENS)
    a = g.admit({"tenant": "t"}, token_estimate=10)
    for bad in ("25", 2.5, None, [25]):
        with pytest.raises(TypeError, match="usage"):
            a.settle(bad)


CONCURRENCY = """
version: 1
rules:
  - name: app-cap
    key: [app]
    concurrency: 1
"""


def test_a_with_block_releases_the_permit():
    g = governor(CONCURRENCY)
    with g.admit({"app": "a"}) as a:
        assert a
        busy = g.admit({"app": "a"})
        assert not busy and busy.rule == "app-cap"
        assert "Retry-After" in header_map(busy.headers())
    assert g.admit({"app": "a"}).allowed


def test_a_with_block_releases_the_permit_on_exception():
    g = governor(CONCURRENCY)
    with pytest.raises(ZeroDivisionError):
        with g.admit({"app": "a"}) as a:
            assert a
            1 / 0
    with g.admit({"app": "a"}) as again:
        assert again


def test_a_collected_admission_releases_its_permit():
    g = governor(CONCURRENCY)
    a = g.admit({"app": "a"})
    assert a
    del a
    gc.collect()
    assert g.admit({"app": "a"})


def test_an_admission_outlives_its_governor():
    g = governor(TOKENS + "    concurrency: 1\n")
    a = g.admit({"tenant": "t"}, token_estimate=10, body=REQUEST)
    del g
    gc.collect()
    assert a and a.rule == "tpm"
    a.headers()
    assert a.cached_answer() is None
    a.store_answer(b"{}")
    a.settle(5)
    a.cancel()
    a.release()
    with a:
        pass


# ---- call() -----------------------------------------------------------------------------------

def test_call_raises_rule_rate_limited_with_rule_and_headers():
    g = governor()
    calls = []
    for _ in range(3):
        assert g.call(lambda attempt: calls.append(attempt) or "ok", {"tenant": "t"}) == "ok"
    assert calls == [None, None, None]  # no fallback chain: fn(None)
    with pytest.raises(sluice.RuleRateLimited) as info:
        g.call(lambda attempt: calls.append(attempt), {"tenant": "t"})
    assert len(calls) == 3
    exc = info.value
    assert isinstance(exc, sluice.RateLimited)
    assert exc.rule == "tenant-rpm"
    headers = header_map(exc.headers())
    assert "Retry-After" in headers and "tenant-rpm" in headers["RateLimit-Policy"]
    assert exc.retry_after > 0
    assert "tenant-rpm" in str(exc)


CACHED = """
version: 1
rules:
  - name: tpm
    key: [tenant]
    tokens: [100000/1m]
cache: {max_bytes: 1MiB}
"""


def test_call_answers_from_the_cache_per_tenant():
    g = governor(CACHED)
    calls = []

    def fn(attempt):
        calls.append(attempt)
        return COMPLETION

    assert g.call(fn, {"tenant": "a", "model": "m"}, body=REQUEST) == COMPLETION
    assert g.call(fn, {"tenant": "a", "model": "m"}, body=REQUEST) == COMPLETION
    assert len(calls) == 1  # the second answer came from the cache
    assert g.call(fn, {"tenant": "b", "model": "m"}, body=REQUEST) == COMPLETION
    assert len(calls) == 2  # another tenant: another namespace
    # The cached answer's tokens went back (cancel): only the two calls' 25 stay settled.
    text = g.metrics_text()
    assert metric_value(text, "sluice_tokens_settled_total", rule="tpm") == 50


FALLBACK = """
version: 1
rules:
  - name: tpm
    key: [tenant]
    tokens: [100000/1m]
fallbacks:
  - name: chain
    targets:
      - {name: first, model: m-first}
      - {name: second, model: m-second}
    max_retries_per_target: 0
    backoff_base: 1ms
    backoff_max: 2ms
"""


def test_call_falls_back_to_the_next_target_on_429_and_settles_dict_usage():
    g = governor(FALLBACK)
    seen = []

    def fn(attempt):
        seen.append((attempt.target, attempt.model))
        if attempt.target == "first":
            raise sluice.AttemptFailed(status=429)
        return {"usage": {"total_tokens": 7}}

    answer = g.call(fn, {"tenant": "t", "model": "m"}, token_estimate=50)
    assert answer == {"usage": {"total_tokens": 7}}
    assert seen == [("first", "m-first"), ("second", "m-second")]
    text = g.metrics_text()
    assert metric_value(text, "sluice_tokens_settled_total", rule="tpm") == 7
    assert metric_value(text, "sluice_tokens_refunded_total", rule="tpm") == 43


def test_call_async_runs_an_async_fn_through_the_chain():
    g = governor(FALLBACK)
    seen = []

    async def fn(attempt):
        seen.append(attempt.target)
        await asyncio.sleep(0)
        if attempt.target == "first":
            raise sluice.AttemptFailed(status=429)
        return {"usage": {"total_tokens": 9}}

    async def main():
        return await g.call_async(fn, {"tenant": "t", "model": "m"}, token_estimate=50)

    assert asyncio.run(main()) == {"usage": {"total_tokens": 9}}
    assert seen == ["first", "second"]
    assert metric_value(g.metrics_text(), "sluice_tokens_settled_total", rule="tpm") == 9


def test_call_async_refused_and_admit_async():
    g = governor()

    async def fn(attempt):
        return "ok"

    async def main():
        for _ in range(3):
            assert await g.call_async(fn, {"tenant": "t"}) == "ok"
        with pytest.raises(sluice.RuleRateLimited) as info:
            await g.call_async(fn, {"tenant": "t"})
        assert info.value.rule == "tenant-rpm"
        a = await g.admit_async({"tenant": "u"})
        return bool(a)

    assert asyncio.run(main()) is True


def test_call_releases_the_permit_when_fn_raises():
    g = governor(CONCURRENCY)

    def boom(attempt):
        raise KeyError("x")

    with pytest.raises(KeyError):
        g.call(boom, {"app": "a"})
    assert g.admit({"app": "a"})


# ---- reload -----------------------------------------------------------------------------------

def test_reload_keeps_an_unchanged_rules_state():
    clock = sluice.ManualClock(0.0)
    g = governor(clock=clock)
    assert admitted(g, {"tenant": "t"}) == 3
    g.reload(textwrap.dedent(RPM3) + "  - name: other\n    match: {app: x}\n    key: [app]\n"
             "    requests: [1/1m]\n")
    assert g.rule_names == ["tenant-rpm", "other"]
    assert not g.admit({"tenant": "t"})  # the window is still spent
    # A changed rule starts fresh.
    g.reload(textwrap.dedent(RPM3).replace("3/1m", "4/1m"))
    assert admitted(g, {"tenant": "t"}) == 4


def test_an_invalid_reload_names_source_and_line_and_keeps_the_old_policy():
    g = governor()
    assert admitted(g, {"tenant": "t"}) == 3
    bad = "version: 1\nrules:\n  - name: x\n    requests: [0/1m]\n"
    with pytest.raises(sluice.InvalidArgument, match=r"bad\.yaml:4:"):
        g.reload(bad, source="bad.yaml")
    with pytest.raises(sluice.InvalidArgument, match=r"<string>:1:"):
        g.reload("version: 2\n")
    assert g.rule_names == ["tenant-rpm"]
    assert not g.admit({"tenant": "t"})
    assert admitted(g, {"tenant": "u"}) == 3


def test_governor_refuses_text_and_path_together(tmp_path):
    p = tmp_path / "policy.yaml"
    p.write_text(textwrap.dedent(RPM3))
    with pytest.raises(sluice.InvalidArgument, match="not both"):
        sluice.Governor(textwrap.dedent(RPM3), path=str(p))


# ---- construction from a file -----------------------------------------------------------------

def test_governor_from_path_and_from_sluice_config(tmp_path, monkeypatch):
    p = tmp_path / "policy.yaml"
    p.write_text(textwrap.dedent(RPM3))
    g = sluice.Governor(path=str(p), clock=sluice.ManualClock(0.0))
    assert g.rule_names == ["tenant-rpm"]
    assert admitted(g, {"tenant": "t"}) == 3
    monkeypatch.setenv("SLUICE_CONFIG", str(p))
    assert sluice.Governor().rule_names == ["tenant-rpm"]
    monkeypatch.delenv("SLUICE_CONFIG")
    with pytest.raises(sluice.NotFound, match="SLUICE_CONFIG"):
        sluice.Governor()
    with pytest.raises(sluice.NotFound, match="nope.yaml"):
        sluice.Governor(path=str(tmp_path / "nope.yaml"))
    bad = tmp_path / "bad.yaml"
    bad.write_text("version: 1\nrules:\n  - name: x\n    requests: [0/1m]\n")
    with pytest.raises(sluice.InvalidArgument, match=r"bad\.yaml:4:"):
        sluice.Governor(path=str(bad))


# ---- PolicyWatcher ----------------------------------------------------------------------------

def write_policy(path, text, stamp):
    path.write_text(textwrap.dedent(text))
    os.utime(path, ns=(stamp, stamp))  # a distinct mtime, whatever the file system's resolution


RPM2 = RPM3.replace("3/1m", "2/1m")


def test_policy_watcher_check_reloads_a_changed_file_and_keeps_the_policy_on_errors(tmp_path):
    p = tmp_path / "policy.yaml"
    write_policy(p, RPM3, 10**18)
    g = sluice.Governor(path=str(p), clock=sluice.ManualClock(0.0))
    errors, reloads = [], []
    w = sluice.PolicyWatcher(g, str(p), on_error=errors.append, on_reload=lambda: reloads.append(1))
    assert w.check() is False  # unchanged
    write_policy(p, RPM3 + "  - name: second\n    requests: [1/1m]\n", 10**18 + 10**9)
    assert w.check() is True
    assert (w.reloads, w.errors, len(reloads)) == (1, 0, 1)
    assert g.rule_names == ["tenant-rpm", "second"]
    assert w.check() is False

    write_policy(p, "version: 1\nrules:\n  - name: x\n    requests: [0/1m]\n", 10**18 + 2 * 10**9)
    assert w.check() is False
    assert (w.reloads, w.errors) == (1, 1)
    assert len(errors) == 1 and isinstance(errors[0], sluice.InvalidArgument)
    assert "policy.yaml:4:" in str(errors[0])
    assert g.rule_names == ["tenant-rpm", "second"]
    assert w.check() is False  # the same bad file is not retried
    os.remove(p)
    assert w.check() is False  # a vanished file is no change


def test_policy_watcher_logs_without_on_error(tmp_path, caplog):
    p = tmp_path / "policy.yaml"
    write_policy(p, RPM3, 10**18)
    g = sluice.Governor(path=str(p))
    w = sluice.PolicyWatcher(g, p)  # a path-like works too
    write_policy(p, "version: 9\n", 10**18 + 10**9)
    with caplog.at_level("ERROR", logger="sluice"):
        assert w.check() is False
    assert "not reloaded" in caplog.text and w.errors == 1


@pytest.mark.parametrize("interval", [0, -1, 0.001, 1e9, float("nan"), True, "1"])
def test_policy_watcher_refuses_a_bad_interval(tmp_path, interval):
    g = governor()
    with pytest.raises((ValueError, TypeError)):
        sluice.PolicyWatcher(g, str(tmp_path / "p.yaml"), interval=interval)


def wait_until(predicate, limit=30.0):
    deadline = time.monotonic() + limit
    while not predicate():
        assert time.monotonic() < deadline, "the watcher did not act in time"
        time.sleep(0.01)


def test_policy_watcher_start_stop_from_a_thread(tmp_path):
    p = tmp_path / "policy.yaml"
    write_policy(p, RPM3, 10**18)
    g = sluice.Governor(path=str(p))
    before = threading.active_count()
    with sluice.PolicyWatcher(g, str(p), interval=0.01) as w:
        assert w._runner is not None and isinstance(w._runner, threading.Thread)
        write_policy(p, RPM2, 10**18 + 10**9)
        wait_until(lambda: w.reloads == 1)
    # stop() ended the thread: no reload happens after it returned.
    assert not w._runner.is_alive()
    write_policy(p, RPM3, 10**18 + 2 * 10**9)
    assert w.reloads == 1
    assert threading.active_count() == before


WATCHER_UNDER_GEVENT = r"""
import os, sys, textwrap, time
import gevent
import sluice

path = sys.argv[1]
RPM3 = {rpm3!r}
def write(text, stamp):
    with open(path, "w") as f:
        f.write(textwrap.dedent(text))
    os.utime(path, ns=(stamp, stamp))

write(RPM3, 10**18)
g = sluice.Governor(path=path)
ticks = []
def ticker():
    while True:
        ticks.append(1)
        gevent.sleep(0.005)

def main():
    w = sluice.PolicyWatcher(g, path, interval=0.01).start()
    assert isinstance(w._runner, gevent.Greenlet), type(w._runner)
    write(RPM3.replace("3/1m", "2/1m"), 10**18 + 10**9)
    deadline = time.monotonic() + 30
    while w.reloads == 0:
        assert time.monotonic() < deadline, "no reload"
        gevent.sleep(0.01)
    w.stop()
    assert w._runner.dead, "the greenlet outlived stop()"
    write(RPM3, 10**18 + 2 * 10**9)
    gevent.sleep(0.05)
    assert w.reloads == 1, w.reloads
    return len(ticks)

t = gevent.spawn(ticker)
ticked = gevent.spawn(main).get(timeout=60)
t.kill()
assert ticked > 0
print("OK", ticked)
"""


def test_policy_watcher_start_stop_under_gevent(tmp_path):
    pytest.importorskip("gevent")
    script = WATCHER_UNDER_GEVENT.replace("{rpm3!r}", repr(RPM3))
    result = subprocess.run([sys.executable, "-c", script, str(tmp_path / "policy.yaml")],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.startswith("OK")


def test_policy_watcher_run_async(tmp_path):
    p = tmp_path / "policy.yaml"
    write_policy(p, RPM3, 10**18)
    g = sluice.Governor(path=str(p))
    w = sluice.PolicyWatcher(g, str(p), interval=0.01)

    async def main():
        task = asyncio.get_running_loop().create_task(w.run_async())
        write_policy(p, RPM2, 10**18 + 10**9)
        deadline = time.monotonic() + 30
        while w.reloads == 0:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.01)
        w.stop()
        await asyncio.wait_for(task, 30)

    asyncio.run(main())
    assert w.reloads == 1


# ---- metrics ----------------------------------------------------------------------------------

def test_metrics_text_parses_and_counts_decisions_per_rule():
    from prometheus_client.parser import text_string_to_metric_families

    g = governor()
    for _ in range(5):
        g.admit({"tenant": "t"})
    text = g.metrics_text()
    families = {f.name: f for f in text_string_to_metric_families(text)}
    assert "sluice_decisions" in families
    assert metric_value(text, "sluice_decisions_total", rule="tenant-rpm", result="allowed") == 3
    assert metric_value(text, "sluice_decisions_total", rule="tenant-rpm", result="refused") == 2


# ---- streams ---------------------------------------------------------------------------------

SSE = [b'data: {"object":"chat.completion.chunk","choices":[{"delta":{"content":"hi"}}]}\n\n',
       b'data: {"object":"chat.completion.chunk","choices":[],"usage":'
       b'{"prompt_tokens":3,"completion_tokens":4,"total_tokens":7}}\n\n',
       b"data: [DONE]\n\n"]

STREAMING = """
version: 1
rules:
  - {name: tpm, key: [tenant], tokens: [{limit: 1000, per: 1m}]}
  - {name: cap, key: [tenant], concurrency: 1}
upstreams:
  - name: up
    endpoints: [{id: e1}, {id: e2}]
fallbacks:
  - name: chain
    models: [m]
    targets: [{name: primary, model: m, upstream: up}, {name: backup, model: m2}]
cache: {max_bytes: 1MiB}
"""


def test_stream_falls_back_before_the_first_chunk_settles_usage_and_caches():
    g = governor(STREAMING)
    tried = []

    def fn(attempt):
        tried.append(attempt.target)
        if attempt.target == "primary":
            raise sluice.AttemptFailed(status=429)
        return iter(SSE)

    body = b'{"model":"m","messages":[{"role":"user","content":"x"}]}'
    assert list(g.stream(fn, {"tenant": "a", "model": "m"}, body=body, token_estimate=100)) == SSE
    assert tried == ["primary", "backup"]
    text = g.metrics_text()
    assert metric_value(text, "sluice_tokens_settled_total", rule="tpm") == 7
    assert metric_value(text, "sluice_in_flight", rule="cap") == 0
    # The same question again: replayed from the cache, fn not called, the tokens given back.
    assert list(g.stream(fn, {"tenant": "a", "model": "m"}, body=body, token_estimate=100)) == SSE
    assert tried == ["primary", "backup"]
    assert metric_value(g.metrics_text(), "sluice_tokens_refunded_total", rule="tpm") == 93 + 100


def test_stream_refused_raises_before_iterating_and_holds_nothing():
    g = governor(STREAMING)
    held = g.admit({"tenant": "a", "model": "m"}, token_estimate=1)
    assert held
    with pytest.raises(sluice.RuleRateLimited) as refused:
        g.stream(lambda attempt: iter(SSE), {"tenant": "a", "model": "m"})
    assert refused.value.rule == "cap"
    held.release()
    assert list(g.stream(lambda attempt: iter(SSE), {"tenant": "a", "model": "m"})) == SSE


def test_stream_closed_early_releases_the_permit_and_keeps_the_estimate():
    g = governor(STREAMING)
    chunks = g.stream(lambda attempt: iter(SSE), {"tenant": "a", "model": "m"}, token_estimate=50)
    assert next(chunks) == SSE[0]
    chunks.close()
    text = g.metrics_text()
    assert metric_value(text, "sluice_in_flight", rule="cap") == 0
    assert metric_value(text, "sluice_tokens_settled_total", rule="tpm") == 0  # usage never came
    assert g.admit({"tenant": "a", "model": "m"}, token_estimate=1)


def test_stream_a_break_after_the_first_chunk_is_stream_broken():
    g = governor(STREAMING)

    def fn(attempt):
        def chunks():
            yield SSE[0]
            raise ConnectionResetError("peer went away")
        return chunks()

    got = []
    with pytest.raises(sluice.StreamBroken):
        for chunk in g.stream(fn, {"tenant": "a", "model": "m"}):
            got.append(chunk)
    assert got == [SSE[0]]
    assert g.admit({"tenant": "a", "model": "m"}, token_estimate=1)  # the permit came back


def test_stream_async_without_a_chain():
    g = governor(STREAMING)

    async def fn(attempt):
        assert attempt is None  # model "other" has no chain

        async def gen():
            for chunk in SSE:
                yield chunk
        return gen()

    async def main():
        return [c async for c in g.stream_async(fn, {"tenant": "b", "model": "other"},
                                                token_estimate=20)]
    assert asyncio.run(main()) == SSE
    assert metric_value(g.metrics_text(), "sluice_tokens_settled_total", rule="tpm") == 7
