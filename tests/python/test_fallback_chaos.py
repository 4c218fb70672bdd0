"""Chaos tests: FallbackPolicy against a local mock OpenAI-compatible server (SSE streaming;
scripted 500s, 429 with Retry-After, hangs, resets, mid-stream disconnects). Upstream calls are
counted by the server. Breaker and Retry-After windows run on a ManualClock, so nothing waits
for a window; only the mock's sockets are real."""

import json
import threading

import pytest

import sluice
from mock_openai import MockOpenAI, chat


@pytest.fixture(scope="module")
def mock():
    with MockOpenAI() as server:
        yield server


@pytest.fixture(autouse=True)
def fresh(mock):
    mock.reset()
    yield


def make_policy(clock, **options):
    options.setdefault("breaker", {"consecutive_failures": 5, "open_time": 10.0,
                                   "half_open_probes": 2})
    return sluice.FallbackPolicy([{"name": "primary", "model": "gpt-4o"},
                                  {"name": "backup", "model": "qwen-turbo"}],
                                 clock=clock, **options)


def send(mock, stream=False):
    return lambda attempt: chat(mock.port, attempt.target, timeout=attempt.timeout, stream=stream)


def run_concurrently(fn, threads, per_thread):
    """Runs fn() threads x per_thread times; returns the results and the attempts each took."""
    results, errors = [], []
    lock = threading.Lock()

    def worker():
        for _ in range(per_thread):
            try:
                r = fn()
                with lock:
                    results.append(r)
            except Exception as e:  # collected: the test asserts there are none
                with lock:
                    errors.append(e)

    pool = [threading.Thread(target=worker) for _ in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join(timeout=120)
    return results, errors


def test_primary_down_every_request_succeeds_through_the_backup_and_the_breaker_stops_calling_it(mock):
    clock = sluice.ManualClock()
    policy = make_policy(clock)
    mock.script("primary", mode="error", status=503)
    attempts = []

    def one():
        seen = []

        def attempt(a):
            seen.append(a.target)
            return chat(mock.port, a.target, timeout=5)

        reply = policy.call(attempt)
        attempts.append(len(seen))
        return reply

    results, errors = run_concurrently(one, threads=8, per_thread=25)
    assert errors == []
    assert len(results) == 200
    assert all(r["id"].startswith("backup") for r in results)
    calls = mock.calls()
    # Until the breaker opened: 5 failures in a row (each retried once on the same target, so
    # a few more in flight at the time); afterwards, none.
    assert calls["primary"] <= 5 + 2 * 8
    assert calls["backup"] == 200
    # Added latency is bounded: no request made more than one failed attempt per retry rule
    # (the primary, its one retry), then the backup.
    assert max(attempts) <= 3
    assert attempts[-100:] == [1] * 100  # once open, the primary costs nothing
    assert policy.targets()[0]["state"] == "open"


def test_traffic_returns_to_the_primary_after_it_recovers(mock):
    clock = sluice.ManualClock()
    events = []
    policy = make_policy(clock, max_retries_per_target=0, on_breaker_transition=events.append)
    mock.script("primary", mode="error")
    for _ in range(10):
        policy.call(send(mock))
    assert mock.calls()["primary"] == 5
    mock.script("primary", mode="ok")
    for _ in range(5):
        assert policy.call(send(mock))["id"].startswith("backup")  # still open: no probe yet
    assert mock.calls()["primary"] == 5
    clock.advance(10.0)
    replies = [policy.call(send(mock)) for _ in range(10)]
    assert all(r["id"].startswith("primary") for r in replies)  # 2 probes, then closed
    assert [(e["target"], e["to"], e["reason"]) for e in events] == [
        ("primary", "open", "consecutive failures"),
        ("primary", "half_open", "open time elapsed"),
        ("primary", "closed", "probes succeeded"),
    ]


def test_retry_budget_caps_amplification_when_every_call_fails(mock):
    clock = sluice.ManualClock()
    # One target, three same-target retries allowed, breaker off: only the budget holds back.
    policy = sluice.FallbackPolicy([{"name": "flaky"}], clock=clock, max_retries_per_target=3,
                                   backoff_base=0.001, backoff_max=0.004,
                                   breaker={"consecutive_failures": 0, "failure_ratio": 0.0})
    mock.script("flaky", mode="error")
    outcomes = []

    def one():
        try:
            policy.call(send(mock))
        except sluice.Unavailable:
            outcomes.append("unavailable")

    _, errors = run_concurrently(one, threads=16, per_thread=10)
    assert errors == []
    assert len(outcomes) == 160
    calls = mock.calls()["flaky"]
    # Naive retry-three-times would make 4 x 160 = 640 calls.
    assert 160 <= calls <= 160 * 2
    assert policy.retries_refused > 0
    assert policy.calls_in_flight == 0 and policy.retries_in_flight == 0


def test_429_with_retry_after_sends_traffic_elsewhere_until_it_ends(mock):
    clock = sluice.ManualClock()
    policy = make_policy(clock)
    mock.script("primary", mode="rate_limit", retry_after=3)
    assert policy.call(send(mock))["id"].startswith("backup")
    for _ in range(5):
        policy.call(send(mock))
    assert mock.calls()["primary"] == 1  # the Retry-After window kept the others away
    mock.script("primary", mode="ok")
    clock.advance(3.0)
    assert policy.call(send(mock))["id"].startswith("primary")


def test_a_hanging_primary_costs_one_attempt_timeout_until_the_breaker_opens(mock):
    clock = sluice.ManualClock()
    policy = make_policy(clock, attempt_timeout=0.2,
                         breaker={"consecutive_failures": 3, "open_time": 10.0})
    mock.script("primary", mode="hang", hang=5)
    replies = [policy.call(send(mock)) for _ in range(8)]
    assert all(r["id"].startswith("backup") for r in replies)
    assert mock.calls()["primary"] == 3  # timeouts move on at once; then the breaker opened


def test_reset_connections_fall_back(mock):
    clock = sluice.ManualClock()
    policy = make_policy(clock, max_retries_per_target=0)
    mock.script("primary", mode="reset")
    assert policy.call(send(mock))["id"].startswith("backup")


def test_streaming_falls_back_before_the_first_byte_and_replays_nothing(mock):
    clock = sluice.ManualClock()
    policy = make_policy(clock, max_retries_per_target=0)
    mock.script("primary", mode="error")
    mock.script("backup", chunks=4)
    chunks = list(policy.stream(send(mock, stream=True)))
    texts = [json.loads(c)["choices"][0]["delta"]["content"] for c in chunks]
    assert texts == ["backup-0 ", "backup-1 ", "backup-2 ", "backup-3 "]


def test_no_fallback_after_the_first_streamed_byte(mock):
    clock = sluice.ManualClock()
    policy = make_policy(clock)
    mock.script("primary", mode="cut_stream")
    received = []
    with pytest.raises(sluice.StreamBroken, match="after its first byte"):
        for chunk in policy.stream(send(mock, stream=True)):
            received.append(chunk)
    assert len(received) == 1  # the one chunk that got out, nothing spliced after it
    assert mock.calls().get("backup", 0) == 0
    assert policy.targets()[0]["failures"] == 1


def test_every_target_down_fails_fast_with_retry_after(mock):
    clock = sluice.ManualClock()
    policy = make_policy(clock, max_retries_per_target=0,
                         breaker={"consecutive_failures": 1, "open_time": 10.0})
    mock.script("primary", mode="error")
    mock.script("backup", mode="error")
    with pytest.raises(sluice.Unavailable):
        policy.call(send(mock))
    clock.advance(4.0)
    with pytest.raises(sluice.Unavailable) as info:
        policy.call(send(mock))
    assert info.value.retry_after == pytest.approx(6.0)
    assert mock.calls() == {"primary": 1, "backup": 1}
