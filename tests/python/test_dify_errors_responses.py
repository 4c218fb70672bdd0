"""sluice.dify's invoke-error classifier and Dify-shaped 429 answers."""

from __future__ import annotations

import json

import pytest

import sluice
import sluice.dify as dify
from dify_support import (InvokeAuthorizationError, InvokeBadRequestError, InvokeConnectionError,
                          InvokeError, InvokeRateLimitError, InvokeServerUnavailableError)


# Dify-shaped fakes: the real classes live in Dify; only their names and MRO matter.


class ProviderSpecificRateLimit(InvokeRateLimitError):
    pass


@pytest.mark.parametrize("error, kind, cooldown, rotates", [
    (InvokeRateLimitError, "rate_limited", 60.0, True),
    (ProviderSpecificRateLimit, "rate_limited", 60.0, True),
    (InvokeAuthorizationError, "auth", 10.0, True),
    (InvokeConnectionError, "connect", 10.0, True),
    (InvokeServerUnavailableError, "server", 0.0, False),
    (InvokeBadRequestError, "client", 0.0, False),
])
def test_difys_invoke_errors_map_to_sluice_failures_with_difys_cooldowns(error, kind, cooldown,
                                                                          rotates):
    failure = dify.classify_invoke_error(error("provider said no"))
    assert (failure.kind, failure.cooldown, failure.rotates) == (kind, cooldown, rotates)
    assert sluice.classify(**failure.outcome) == kind, "the outcome reads as the same class"


def test_other_exceptions_are_not_provider_failures():
    assert dify.classify_invoke_error(InvokeError("generic")) is None
    assert dify.classify_invoke_error(KeyError("bug")) is None
    assert dify.invoke_outcome(KeyError("bug")) is None
    assert dify.invoke_outcome(TimeoutError()) == {"transport": "timeout"}
    with pytest.raises(TypeError, match="exc must be an exception"):
        dify.classify_invoke_error("InvokeRateLimitError")


def test_outcomes_are_copies():
    dify.classify_invoke_error(InvokeRateLimitError()).outcome["status"] = 500
    assert dify.invoke_outcome(InvokeRateLimitError()) == {"status": 429}


def test_fallback_policy_moves_on_after_a_dify_rate_limit():
    policy = sluice.FallbackPolicy([{"name": "key-1"}, {"name": "key-2"}], backoff_base=0.001, backoff_max=0.001)
    seen = []

    def call(attempt):
        seen.append(attempt.target)
        if attempt.target == "key-1":
            raise InvokeRateLimitError("429 from the daemon")
        return "answer"

    assert policy.call(call, classify=dify.invoke_outcome) == "answer"
    assert seen == ["key-1", "key-2"]


def test_a_bad_request_is_raised_not_retried():
    policy = sluice.FallbackPolicy([{"name": "key-1"}, {"name": "key-2"}], backoff_base=0.001, backoff_max=0.001)

    def call(attempt):
        raise InvokeBadRequestError("bad prompt")

    with pytest.raises(InvokeBadRequestError):
        policy.call(call, classify=dify.invoke_outcome)


def refusal():
    limiter = sluice.RateLimiter([sluice.Window(1, 10.0)])
    limiter.try_acquire("k")
    return limiter.try_acquire("k")


def test_too_many_requests_body_and_headers_from_a_decision():
    body, status, headers = dify.too_many_requests("slow down", refusal())
    assert body == {"code": "too_many_requests", "message": "slow down", "status": 429}
    assert status == 429
    names = {name for name, _ in headers}
    assert {"Retry-After", "RateLimit", "RateLimit-Policy"} <= names
    assert int(dict(headers)["Retry-After"]) >= 1


def test_rate_limit_error_body_from_a_rate_limited_exception():
    body, status, headers = dify.rate_limit_error("provider limit",
                                                  sluice.RateLimited(refusal()))
    assert body["code"] == "rate_limit_error" and status == 429
    assert "Retry-After" in dict(headers)


def test_retry_after_is_added_when_the_source_only_knows_the_seconds():
    class Refused(Exception):
        retry_after = 2.2
        headers = []

    assert dify.limit_headers(Refused()) == [("Retry-After", "3")]
    assert dify.limit_headers(None) == []


def test_a_governor_admission_gives_its_rule_headers():
    governor = sluice.Governor("version: 1\nrules:\n  - {name: rpm, key: [app], "
                               "requests: [1/1m]}\n")
    governor.admit({"app": "a"})
    body, _, headers = dify.too_many_requests("no", governor.admit({"app": "a"}))
    assert any(name == "RateLimit-Policy" and "rpm" in value for name, value in headers)


def test_quota_exceeded_response_from_rate_limit_enter():
    dify.configure(dify.AppConcurrency(sluice.Governor(dify.policy("process", name="resp")),
                                       ceiling=256))
    dify.RateLimit._instances.clear()
    try:
        limit = dify.RateLimit("resp-app", 1)
        limit.enter()
        with pytest.raises(dify.AppInvokeQuotaExceededError) as refused:
            limit.enter()
        body, status, headers = dify.quota_exceeded_response(refused.value)
        assert body == {"code": "too_many_requests", "message": str(refused.value),
                        "status": 429}
        assert "Retry-After" in dict(headers) and "RateLimit" in dict(headers)
    finally:
        dify.configure(None)
        dify.RateLimit._instances.clear()


def test_stream_error_event_is_a_429_not_a_400():
    event = dify.stream_error_event("too_many_requests", "budget spent", refusal(),
                                    task_id="t", message_id="m")
    assert event["event"] == "error" and event["status"] == 429
    assert event["code"] == "too_many_requests" and event["retry_after"] >= 1
    assert (event["task_id"], event["message_id"]) == ("t", "m")
    text = dify.sse(event)
    assert text.startswith("data: ") and text.endswith("\n\n")
    assert json.loads(text[len("data: "):]) == event
    with pytest.raises(ValueError, match="code must be"):
        dify.stream_error_event("completion_request_error", "x")
    with pytest.raises(TypeError, match="message must be a str"):
        dify.too_many_requests(None)
