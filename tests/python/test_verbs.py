"""Issue 14: one verb per meaning (docs/architecture.md has the table), the old Python names kept
for a release as deprecated aliases that warn and still work, and the one status table."""

from __future__ import annotations

import asyncio
import warnings

import pytest

import sluice
from sluice import ManualClock, RateLimiter, Window

YEAR = 366 * 86400.0


def test_try_acquire_returns_a_decision_truthy_when_allowed():
    rl = RateLimiter([Window(2, YEAR)], clock=ManualClock())
    first = rl.try_acquire("k")
    assert isinstance(first, sluice.Decision) and first and first.allowed
    assert first.remaining == 1
    rl.try_acquire("k")
    refused = rl.try_acquire("k")
    assert isinstance(refused, sluice.Decision) and not refused and refused.retry_after > 0


def test_allow_is_the_yes_no_fast_path():
    rl = RateLimiter([Window(3, YEAR)], max_keys=1, clock=ManualClock())
    assert [rl.allow("k") for _ in range(4)] == [True, True, True, False]
    assert rl.allow("new") is False  # a new key beyond max_keys: refused, not raised
    with pytest.raises(sluice.CapacityError):
        rl.try_acquire("new")
    with pytest.raises(sluice.InvalidArgument, match="cost"):
        rl.allow("k", 0)


def test_try_acquire_async_returns_the_decision():
    rl = RateLimiter([Window(1, YEAR)], clock=ManualClock())
    assert asyncio.run(rl.try_acquire_async("k")).allowed
    assert not asyncio.run(rl.try_acquire_async("k")).allowed


def test_decide_is_a_deprecated_alias_of_try_acquire():
    rl = RateLimiter([Window(1, YEAR)], clock=ManualClock())
    with pytest.warns(DeprecationWarning, match="decide is deprecated: use try_acquire") as caught:
        decision = rl.decide("k")
    assert caught[0].filename == __file__  # stacklevel=2: the caller's line
    assert isinstance(decision, sluice.Decision) and decision.allowed
    with pytest.warns(DeprecationWarning):
        assert not rl.decide("k")


def test_decide_async_is_a_deprecated_alias_of_try_acquire_async():
    rl = RateLimiter([Window(1, YEAR)], clock=ManualClock())
    with pytest.warns(DeprecationWarning, match="decide_async is deprecated") as caught:
        coroutine = rl.decide_async("k")
    assert caught[0].filename == __file__
    assert asyncio.run(coroutine).allowed


@pytest.mark.parametrize("make", [
    lambda **o: sluice.RateLimiter([Window(5, YEAR)], **o),
    lambda **o: sluice.LeakyBucket(5, **o),
    lambda **o: sluice.ConcurrencyLimiter(5, **o),
    lambda **o: sluice.TokenBudget([Window(5, YEAR)], **o),
], ids=["RateLimiter", "LeakyBucket", "ConcurrencyLimiter", "TokenBudget"])
def test_rule_is_a_deprecated_alias_of_redis_name(make):
    # Without a store the name is not used, but the keyword is read, checked and passed on.
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        make(redis_name="tenant-rpm")  # the new name does not warn
    with pytest.warns(DeprecationWarning, match=r"\(rule=\.\.\.\) is deprecated: use redis_name="):
        make(rule="tenant-rpm")
    with pytest.raises(TypeError, match="rule is the deprecated name of redis_name"):
        with pytest.warns(DeprecationWarning):
            make(rule="a", redis_name="b")
    with pytest.raises(TypeError):
        with pytest.warns(DeprecationWarning):
            make(rule=5)  # still checked as redis_name is


def test_rule_alias_reaches_redis(redis_server):
    store = sluice.RedisStore(port=redis_server.port, command_timeout=0.5)
    with pytest.warns(DeprecationWarning):
        old = RateLimiter([Window(3, YEAR)], redis=store, rule="verbs-alias", local_share=1)
    new = RateLimiter([Window(3, YEAR)], redis=store, redis_name="verbs-alias", local_share=1)
    assert old.allow("k") and new.allow("k")  # one limit: both names are the same Redis key
    assert old.try_acquire("k").remaining == 0
    assert not new.allow("k")


# ---- the status table ---------------------------------------------------------------------------

EXPECTED = {  # absl code -> (absl name, C code, C name, Python class)
    1: ("CANCELLED", None, None, sluice.Error),
    2: ("UNKNOWN", None, None, sluice.Error),
    3: ("INVALID_ARGUMENT", 1, "SLUICE_INVALID_ARGUMENT", sluice.InvalidArgument),
    4: ("DEADLINE_EXCEEDED", 5, "SLUICE_DEADLINE_EXCEEDED", sluice.DeadlineExceeded),
    5: ("NOT_FOUND", 8, "SLUICE_NOT_FOUND", sluice.NotFound),
    6: ("ALREADY_EXISTS", 9, "SLUICE_ALREADY_EXISTS", sluice.AlreadyExists),
    7: ("PERMISSION_DENIED", 11, "SLUICE_PERMISSION_DENIED", sluice.PermissionDenied),
    8: ("RESOURCE_EXHAUSTED", 2, "SLUICE_RESOURCE_EXHAUSTED", sluice.CapacityError),
    9: ("FAILED_PRECONDITION", 3, "SLUICE_FAILED_PRECONDITION", sluice.FailedPrecondition),
    10: ("ABORTED", 10, "SLUICE_ABORTED", sluice.StreamBroken),
    13: ("INTERNAL", 7, "SLUICE_INTERNAL", sluice.Error),
    14: ("UNAVAILABLE", 4, "SLUICE_UNAVAILABLE", sluice.Unavailable),
}


def test_the_status_table_is_exposed_and_names_classes_of_sluice_errors():
    rows = {code: (name, c_code, c_name, python)
            for code, name, c_code, c_name, python in sluice._core.status_table()}
    assert rows[0] == ("OK", 0, "SLUICE_OK", None)
    for code, (name, c_code, c_name, cls) in EXPECTED.items():
        if c_code is None:
            assert code not in rows  # not in the table: mapped to Internal's class
            continue
        assert rows[code] == (name, c_code, c_name, cls.__name__)
        assert issubclass(getattr(sluice, cls.__name__), sluice.Error)
        assert sluice._errors.error_for(code) is cls


@pytest.mark.parametrize("code", sorted(EXPECTED), ids=[v[0] for _, v in sorted(EXPECTED.items())])
def test_each_status_code_raises_its_class(code):
    # The translator of the native extension: a C++ call failing with `code` raises this class
    # with the message intact (undecodable bytes are escaped, not a UnicodeDecodeError).
    cls = EXPECTED[code][3]
    with pytest.raises(cls) as raised:
        sluice._core._raise_status(code, "sluice.X: field must be 1, got 2")
    assert type(raised.value) is cls
    assert str(raised.value) == "sluice.X: field must be 1, got 2"


def test_invalid_argument_is_still_a_value_error():
    with pytest.raises(ValueError):
        sluice._core._raise_status(3, "bad")


@pytest.mark.parametrize("code,cls", [(4, sluice.DeadlineExceeded), (10, sluice.StreamBroken),
                                      (6, sluice.AlreadyExists), (14, sluice.Unavailable)])
def test_the_fallback_helpers_raise_the_class_the_table_gives(code, cls):
    # A call that ended with `code` (no attempt exception to re-raise) raises the table's class.
    from sluice._fallback import _raise_failure

    class Ended:
        status = "ended"
        message = "the call ended"
        retry_after = 1.5

    Ended.code = code
    with pytest.raises(cls, match="the call ended") as raised:
        _raise_failure(Ended(), None)
    if cls is sluice.Unavailable:
        assert raised.value.retry_after == 1.5


def test_a_deadline_exceeded_call_raises_deadline_exceeded():
    clock = ManualClock()
    policy = sluice.FallbackPolicy([{"name": "a"}], deadline=1.0, clock=clock,
                                   max_retries_per_target=100, backoff_base=0.001, backoff_max=0.001)

    def slow(attempt):
        clock.advance(2.0)
        raise sluice.AttemptFailed(500)

    with pytest.raises(sluice.DeadlineExceeded):
        policy.call(slow)


def test_the_rule_warning_points_at_the_callers_line():
    with pytest.warns(DeprecationWarning) as caught:
        RateLimiter([Window(5, YEAR)], rule="x")
    assert caught[0].filename == __file__
