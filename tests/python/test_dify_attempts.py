"""sluice.dify.AttemptLimiter: Dify's helper.RateLimiter interface with an exact sliding log
(never more than max_attempts in any window of time_window seconds)."""

from __future__ import annotations

import math
import random

import pytest

import sluice
import sluice.dify as dify
from sluice.dify import AttemptLimiter

import dify_support


def test_difys_interface_and_lockout():
    clock = sluice.ManualClock(100.0)
    limiter = AttemptLimiter("email_code_login_rate_limit", 3, 300, clock=clock)
    for _ in range(3):
        assert not limiter.is_rate_limited("a@example.com")
        assert limiter.increment_rate_limit("a@example.com")
    assert limiter.is_rate_limited("a@example.com")
    assert not limiter.increment_rate_limit("a@example.com"), "refused: nothing recorded"
    assert not limiter.is_rate_limited("b@example.com"), "keys are separate"
    assert limiter.seconds_until_available("a@example.com") == 300
    clock.advance(299.5)
    assert limiter.seconds_until_available("a@example.com") == 1, "at least 1"
    clock.advance(0.5)
    assert not limiter.is_rate_limited("a@example.com")


def test_same_second_attempts_do_not_collide():
    # Dify's members are int(time.time()): three attempts in one second counted as one.
    clock = sluice.ManualClock(5.0)
    limiter = AttemptLimiter("p", 2, 60, clock=clock)
    limiter.increment_rate_limit("k")
    clock.advance(0.1)
    limiter.increment_rate_limit("k")
    assert limiter.is_rate_limited("k")


def test_prefixes_separate_keys_and_difys_extra_arguments_are_accepted():
    clock = sluice.ManualClock()
    one = AttemptLimiter("reset", 1, 60, member_factory=lambda: "m", redis_client=object(),
                         clock=clock)
    one.increment_rate_limit("k")
    assert one.is_rate_limited("k")
    assert one.seconds_until_available("other") == 1


@pytest.mark.parametrize("seed", range(12))
def test_property_no_window_ever_holds_more_than_max_attempts(seed):
    rng = random.Random(seed)
    max_attempts = rng.randint(1, 6)
    time_window = rng.choice([1.0, 2.5, 10.0, 60.0])
    clock = sluice.ManualClock(rng.uniform(0, 1000))
    limiter = AttemptLimiter("prop", max_attempts, time_window, clock=clock)
    recorded = []
    for _ in range(400):
        clock.advance(rng.choice([0.0, 0.001, time_window / 7, time_window / 2,
                                  rng.uniform(0, time_window * 1.5)]))
        now = clock.now()
        limited = limiter.is_rate_limited("k")
        assert limiter.increment_rate_limit("k") is (not limited)
        if not limited:
            recorded.append(now)
        else:
            # Exact, not merely safe: refused only when the window already holds max_attempts.
            assert now - recorded[-max_attempts] < time_window
            wait = limiter.seconds_until_available("k")
            assert wait >= 1
            assert wait == max(1, math.ceil(recorded[-max_attempts] + time_window - now - 1e-9))
    # Any max_attempts + 1 consecutive recorded attempts span at least time_window.
    for i in range(len(recorded) - max_attempts):
        assert recorded[i + max_attempts] - recorded[i] >= time_window - 1e-9
    assert len(recorded) > max_attempts


def test_host_scope_shares_the_log_between_limiters(tmp_path):
    region = dify_support.unique_name("attempts")
    try:
        first = AttemptLimiter("login", 2, 60, shared_region=region)
        second = AttemptLimiter("login", 2, 60, shared_region=region)
        first.increment_rate_limit("ip-1")
        second.increment_rate_limit("ip-1")
        assert first.is_rate_limited("ip-1") and second.is_rate_limited("ip-1")
    finally:
        try:
            sluice.remove_shared_region(region)
        except sluice.NotFound:
            pass


@pytest.mark.parametrize("args, error, text", [
    (("", 1, 60), sluice.InvalidArgument, "prefix must not be empty"),
    ((None, 1, 60), TypeError, "prefix must be a str"),
    (("p", 0, 60), sluice.InvalidArgument, "max_attempts must be an integer >= 1, got 0"),
    (("p", -3, 60), sluice.InvalidArgument, "max_attempts must be an integer >= 1"),
    (("p", 10_000, 60), sluice.InvalidArgument, "max_attempts must be at most"),
    (("p", float("nan"), 60), sluice.InvalidArgument, "max_attempts must be an integer >= 1, got nan"),
    (("p", 1, 0), sluice.InvalidArgument, "time_window must be a finite number of seconds > 0"),
    (("p", 1, float("nan")), sluice.InvalidArgument, "time_window must be a finite"),
    (("p", 1, float("inf")), sluice.InvalidArgument, "time_window must be a finite"),
    (("p", 1, "60"), TypeError, "time_window must be a number of seconds"),
])
def test_hostile_arguments_name_the_argument(args, error, text):
    with pytest.raises(error, match=text):
        AttemptLimiter(*args)


@pytest.mark.parametrize("key, error", [(None, TypeError), ("", sluice.InvalidArgument),
                                        ("\udcff", sluice.InvalidArgument),
                                        ("k" * 100_000, sluice.InvalidArgument)])
def test_hostile_keys_name_the_argument(key, error):
    limiter = AttemptLimiter("p", 1, 60)
    for method in (limiter.is_rate_limited, limiter.increment_rate_limit,
                   limiter.seconds_until_available):
        with pytest.raises(error, match="key"):
            method(key)


def test_cluster_scope_defaults_share_one_log_through_redis(redis_server):
    previous = dify.configure_attempt_limiters(
        "cluster", name=dify_support.unique_name("cluster"),
        redis=sluice.RedisStore(port=redis_server.port, command_timeout=0.5), local_share=2)
    try:
        first = AttemptLimiter("owner_transfer", 1, 60)
        second = AttemptLimiter("owner_transfer", 1, 60)
        assert first.increment_rate_limit("acct-1")
        assert second.is_rate_limited("acct-1") and not second.increment_rate_limit("acct-1")
        assert second.seconds_until_available("acct-1") >= 59
    finally:
        if previous:
            dify.configure_attempt_limiters(**previous)
        else:
            dify.configure_attempt_limiters("process")
