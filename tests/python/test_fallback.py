"""FallbackPolicy from Python without a server: the helpers, classification, asyncio, gevent."""

import asyncio
import http.client

import pytest

import sluice
from loop_gaps import await_beside_ticker


def policy_of(*names, clock=None, **options):
    return sluice.FallbackPolicy([{"name": n, "model": n + "-model"} for n in names],
                                 clock=clock or sluice.ManualClock(), **options)


def test_classify_and_retry_after():
    assert sluice.classify(200) is None
    assert sluice.classify(503) == "server"
    assert sluice.classify(429) == "rate_limited"
    assert sluice.classify(transport="timeout") == "timeout"
    body = b'{"error":{"code":"context_length_exceeded","message":"too long"}}'
    assert sluice.classify(400, error_body=body) == "context_length"
    assert sluice.classify(400, error_body=b'{"error":{"code":"content_filter"}}') == "content_filter"
    assert sluice.parse_retry_after("2") == 2.0
    assert sluice.parse_retry_after("soon") is None
    with pytest.raises(sluice.InvalidArgument, match="transport"):
        sluice.classify(200, transport="smoke")


def test_outcome_of_reads_common_client_exceptions():
    class Response:
        status_code = 429
        headers = {"retry-after": "7"}
        content = b'{"error":{"type":"rate_limit_error"}}'

    class HTTPStatusError(Exception):  # shaped like httpx's
        response = Response()

    class APITimeoutError(Exception):  # shaped like openai's
        pass

    class ConnectError(Exception):  # shaped like httpx's
        pass

    assert sluice.outcome_of(HTTPStatusError()) == {
        "status": 429, "error_body": Response.content, "retry_after": 7.0}
    assert sluice.outcome_of(APITimeoutError()) == {"transport": "timeout"}
    assert sluice.outcome_of(TimeoutError()) == {"transport": "timeout"}
    assert sluice.outcome_of(ConnectError()) == {"transport": "connect"}
    assert sluice.outcome_of(ConnectionRefusedError()) == {"transport": "connect"}
    assert sluice.outcome_of(http.client.RemoteDisconnected()) == {"transport": "reset"}
    assert sluice.outcome_of(sluice.AttemptFailed(500, error_body="x"))["error_body"] == b"x"
    assert sluice.outcome_of(KeyError("a bug")) is None


def test_call_falls_back_and_reports_each_attempt():
    policy = policy_of("primary", "backup", max_retries_per_target=0)
    seen = []

    def fn(attempt):
        seen.append((attempt.target, attempt.model, attempt.number))
        if attempt.target == "primary":
            raise sluice.AttemptFailed(500)
        return "ok"

    assert policy.call(fn) == "ok"
    assert seen == [("primary", "primary-model", 1), ("backup", "backup-model", 2)]
    stats = {t["name"]: t for t in policy.targets()}
    assert stats["primary"]["failures"] == 1
    assert stats["backup"]["successes"] == 1


def test_a_refused_request_raises_the_functions_own_error_and_bugs_propagate():
    policy = policy_of("primary", "backup")

    class BadRequest(Exception):
        status_code = 400

    with pytest.raises(BadRequest):
        policy.call(lambda a: (_ for _ in ()).throw(BadRequest()))
    calls = []

    def buggy(attempt):
        calls.append(attempt.target)
        raise KeyError("not the provider's fault")

    with pytest.raises(KeyError):
        policy.call(buggy)
    assert calls == ["primary"]
    assert policy.calls_in_flight == 0


def test_context_length_jumps_to_the_larger_model():
    policy = policy_of("small", "backup", "long", context_length_target="long")
    body = b'{"error":{"code":"context_length_exceeded"}}'
    seen = []

    def fn(attempt):
        seen.append(attempt.target)
        if attempt.target != "long":
            raise sluice.AttemptFailed(400, error_body=body)
        return attempt.model

    assert policy.call(fn) == "long-model"
    assert seen == ["small", "long"]


def test_balanced_target_exposes_the_endpoint_and_its_labels():
    clock = sluice.ManualClock()
    pool = sluice.Balancer("round_robin", clock=clock)
    pool.add_endpoint("key-1", labels={"api_key": "sk-1"})
    policy = sluice.FallbackPolicy([{"name": "pool", "balancer": pool}], clock=clock)
    del pool  # the policy keeps it alive
    assert policy.call(lambda a: (a.endpoint_id, a.labels["api_key"])) == ("key-1", "sk-1")


def test_every_target_open_raises_unavailable_with_retry_after():
    clock = sluice.ManualClock()
    events = []
    policy = policy_of("a", clock=clock, max_retries_per_target=0,
                       breaker={"consecutive_failures": 1, "open_time": 5.0},
                       on_breaker_transition=events.append)
    with pytest.raises(sluice.Unavailable):
        policy.call(lambda a: (_ for _ in ()).throw(sluice.AttemptFailed(503)))
    clock.advance(2.0)
    with pytest.raises(sluice.Unavailable, match="circuit open") as info:
        policy.call(lambda a: "never called")
    assert info.value.retry_after == pytest.approx(3.0)
    assert [e["to"] for e in events] == ["open"]
    assert events[0]["reason"] == "consecutive failures" and events[0]["open_for"] == 5.0


def test_options_are_checked_naming_the_field():
    with pytest.raises(sluice.InvalidArgument, match="targets must hold"):
        sluice.FallbackPolicy([])
    with pytest.raises(sluice.InvalidArgument, match=r"targets\[0\] has no 'url'"):
        sluice.FallbackPolicy([{"name": "a", "url": "x"}])
    with pytest.raises(sluice.InvalidArgument, match="breaker has no 'open'"):
        policy_of("a", breaker={"open": 1})
    with pytest.raises(sluice.InvalidArgument, match="'smoke' is not a failure class"):
        policy_of("a", actions={"smoke": "fatal"})
    with pytest.raises(sluice.InvalidArgument, match="retry_same"):
        policy_of("a", actions={"server": "panic"})
    with pytest.raises(ValueError, match="deadline"):
        policy_of("a", deadline=float("nan"))


def test_stream_abandoned_by_the_consumer_is_not_a_failure():
    policy = policy_of("primary", "backup")
    stream = policy.stream(lambda a: iter([b"1", b"2", b"3"]))
    assert next(stream) == b"1"
    stream.close()
    assert policy.calls_in_flight == 0
    assert policy.targets()[0]["failures"] == 0


def test_call_async_and_stream_async_fall_back_and_never_block_the_loop():
    clock = sluice.ManualClock()
    policy = policy_of("primary", "backup", clock=clock, backoff_base=0.05, backoff_max=0.05)

    async def fn(attempt):
        await asyncio.sleep(0.01)
        if attempt.target == "primary":
            raise sluice.AttemptFailed(500)
        return attempt.target

    async def chunks(attempt):
        if attempt.target == "primary":
            raise sluice.AttemptFailed(502)
        for i in range(3):
            await asyncio.sleep(0.001)
            yield i

    async def main():
        first = await policy.call_async(fn)
        streamed = [c async for c in policy.stream_async(chunks)]
        return first, streamed

    (first, streamed), gaps = asyncio.run(await_beside_ticker(main()))
    assert first == "backup"
    assert streamed == [0, 1, 2]
    assert max(gaps) < 0.04  # the jittered backoff (up to 50 ms) was an asyncio.sleep


def test_backoff_sleeps_cooperatively_under_gevent():
    pytest.importorskip("gevent")
    from loop_gaps import run_greenlets_beside_ticker

    policy = policy_of("only", backoff_base=0.05, backoff_max=0.05, max_retries_per_target=1,
                       retry_budget_min=20,
                       breaker={"consecutive_failures": 0, "failure_ratio": 0.0})
    results = []

    def run():
        attempts = []

        def fn(attempt):
            attempts.append(attempt.number)
            if attempt.number == 1:
                raise sluice.AttemptFailed(503)
            return "second time lucky"

        results.append(policy.call(fn))

    gaps = run_greenlets_beside_ticker([run] * 20)
    assert results == ["second time lucky"] * 20
    assert max(gaps) < 0.04  # the backoff (up to 50 ms each) was a gevent sleep
