"""sluice.dify's key rotation: LBModelManager (Dify's interface on a sluice Balancer per tuple)
and invoke_with_key_rotation (Dify's _round_robin_invoke, with failover for a stream until its
first chunk). Dify-shaped fakes of our own; a ManualClock in process scope, so nothing sleeps;
the host scope test runs a second process."""

from __future__ import annotations

import enum
import json
import math
import subprocess
import sys
import textwrap

import pytest

import sluice
import sluice.dify as dify
from dify_support import (InvokeAuthorizationError, InvokeBadRequestError, InvokeConnectionError,
                          InvokeRateLimitError)

import dify_support


class ModelType(str, enum.Enum):  # Dify's ModelType is a str enum; .value is what keys use
    LLM = "llm"


class Config:
    """Dify's ModelLoadBalancingConfiguration: id, name, credentials."""

    def __init__(self, id, name=None, credentials=None):
        self.id = id
        self.name = name or f"key {id}"
        self.credentials = credentials if credentials is not None else {"api_key": f"sk-{id}"}


# Dify's invoke errors are recognised by class name (sluice.dify.classify_invoke_error).


TUPLE = ("tenant-1", "openai", ModelType.LLM, "gpt-4o")


@pytest.fixture
def clock():
    clock = sluice.ManualClock(100.0)
    previous = dify.configure_key_rotation("process", clock=clock)
    yield clock
    dify.configure_key_rotation(**previous)


def manager(*ids, **kwargs):
    return dify.LBModelManager(*TUPLE, [Config(i) for i in ids], **kwargs)


def ttl(config_id, model_type=ModelType.LLM):
    return dify.LBModelManager.get_config_in_cooldown_and_ttl("tenant-1", "openai", model_type,
                                                              "gpt-4o", config_id)


def endpoint(m, config_id):
    return next(e for e in m.balancer.endpoints() if e["id"].endswith("/" + config_id))


# ---- LBModelManager ---------------------------------------------------------------------------


def test_fetch_next_skips_cooled_configs_and_gives_none_when_all_cool(clock):
    m = manager("k1", "k2", "k3")
    assert {m.fetch_next().id for _ in range(60)} == {"k1", "k2", "k3"}, "every key serves"
    m.cooldown(Config("k1"))
    m.cooldown(Config("k2"), expire=10)
    assert m.in_cooldown(Config("k1")) and m.in_cooldown(Config("k2"))
    assert not m.in_cooldown(Config("k3"))
    assert {m.fetch_next().id for _ in range(30)} == {"k3"}
    m.cooldown(m._load_balancing_configs[2], expire=5)
    assert m.fetch_next() is None, "all cooling: None, as Dify"
    clock.advance(5.0)
    assert {m.fetch_next().id for _ in range(20)} == {"k3"}
    clock.advance(5.0)
    assert {m.fetch_next().id for _ in range(60)} == {"k2", "k3"}
    clock.advance(50.0)
    assert {m.fetch_next().id for _ in range(60)} == {"k1", "k2", "k3"}
    assert all(e["in_flight"] == 0 for e in m.balancer.endpoints()), "fetch_next holds nothing"


def test_cooldown_ttl_seen_by_the_console_rounded_up(clock):
    m = manager("k1", "k2")
    assert ttl("k1") == (False, 0)
    m.cooldown(Config("k1"), expire=60)
    assert ttl("k1") == (True, 60)
    assert ttl("k1", model_type="llm") == (True, 60), "the enum and its value: one tuple"
    clock.advance(0.5)
    assert ttl("k1") == (True, 60), "59.5 s left shows as 60, as a key never shows 0 early"
    clock.advance(59.3)
    assert ttl("k1") == (True, 1)
    clock.advance(0.2)
    assert ttl("k1") == (False, 0)
    assert ttl("k2") == (False, 0)
    assert ttl("never-configured") == (False, 0), "an id the console asks about, no manager"
    other_model = dify.LBModelManager.get_config_in_cooldown_and_ttl(
        "tenant-1", "openai", "llm", "gpt-4o-mini", "k1")
    assert other_model == (False, 0), "another model's tuple has its own cooldowns"


def test_a_cooldown_only_lengthens_and_restore_ends_it(clock):
    m = manager("k1", "k2")
    m.cooldown(Config("k1"), expire=60)
    m.cooldown(Config("k1"), expire=10)
    assert ttl("k1") == (True, 60), "the later end wins (Dify's SETEX would shorten it)"
    m.restore(Config("k1"))
    assert ttl("k1") == (False, 0) and not m.in_cooldown(Config("k1"))
    m.cooldown(Config("k1"), expire=10)
    assert ttl("k1") == (True, 10)


def test_managers_of_a_tuple_share_one_balancer_and_pick_only_their_configs(clock):
    old = manager("k1", "k2")
    new = manager("k2", "k3")  # the configs changed: the newest list is the one picked among
    assert old.balancer is new.balancer
    assert {new.fetch_next().id for _ in range(60)} == {"k2", "k3"}
    assert {old.fetch_next().id for _ in range(40)} == {"k2"}, "never a config not its own"
    old.cooldown(Config("k2"))
    assert new.in_cooldown(Config("k2")), "cooldowns are per tuple, not per manager"
    assert old.fetch_next() is None
    assert manager("k1").fetch_next().id == "k1"
    other_tenant = dify.LBModelManager("tenant-2", "openai", "llm", "gpt-4o", [Config("k2")])
    assert other_tenant.balancer is not new.balancer
    assert other_tenant.fetch_next().id == "k2", "another tenant's k2 is not cooling"


def test_inherit_config_takes_the_managed_credentials_or_is_left_out(clock):
    configs = [Config("k1"), Config("inherit", name="__inherit__")]
    without = dify.LBModelManager(*TUPLE, configs)
    assert [c.id for c in without._load_balancing_configs] == ["k1"]
    assert len(configs) == 2, "the caller's list is not changed"
    with_creds = dify.LBModelManager(*TUPLE, configs, managed_credentials={"api_key": "sk-own"})
    assert configs[1].credentials == {"api_key": "sk-own"}
    assert {with_creds.fetch_next().id for _ in range(40)} == {"k1", "inherit"}


def test_no_configs_gives_none(clock):
    m = dify.LBModelManager(*TUPLE, [])
    assert m.fetch_next() is None
    with pytest.raises(dify.NoKeyAvailable, match="cooling down"):
        dify.invoke_with_key_rotation(m, lambda c: pytest.fail("no key to call"), stream=False)


def test_unusual_but_valid_ids_work_end_to_end(clock):
    ids = ["キー-1", "a/b:c d", "x" * 512, "\U0001F511"]
    m = dify.LBModelManager("テナント", "openai/compat", "llm", "m:1 2", [Config(i) for i in ids])
    assert {m.fetch_next().id for _ in range(80)} == set(ids)
    m.cooldown(Config("x" * 512), expire=3)
    assert dify.LBModelManager.get_config_in_cooldown_and_ttl(
        "テナント", "openai/compat", "llm", "m:1 2", "x" * 512) == (True, 3)


# ---- invoke_with_key_rotation -----------------------------------------------------------------


class Provider:
    """call(config): the n-th attempt's behaviour from `script` (an exception to raise, a list of
    chunks to stream, or a value to return)."""

    def __init__(self, *script):
        self.script = list(script)
        self.attempts = []

    def __call__(self, config):
        self.attempts.append(config.id)
        step = self.script[len(self.attempts) - 1]
        if isinstance(step, BaseException):
            raise step
        return step


def stream_of(*items):
    """A generator yielding items; an exception item is raised when reached."""
    for item in items:
        if isinstance(item, BaseException):
            raise item
        yield item


@pytest.mark.parametrize("error, cooldown, reason", [
    (InvokeRateLimitError("429"), 60, "rate_limited"),
    (InvokeAuthorizationError("401"), 10, "auth"),
    (InvokeConnectionError("refused"), 10, "connect"),
])
def test_blocking_call_fails_over_and_cools_the_failed_key(clock, error, cooldown, reason):
    m = manager("k1", "k2")
    provider = Provider(error, "answer")
    assert dify.invoke_with_key_rotation(m, provider, stream=False) == "answer"
    failed, served = provider.attempts
    assert failed != served
    assert ttl(failed) == (True, cooldown)
    assert endpoint(m, failed)["cooldown_reason"] == reason, "reported to the pick"
    assert ttl(served) == (False, 0)
    assert all(e["in_flight"] == 0 for e in m.balancer.endpoints())


def test_every_key_failing_raises_the_last_error_then_no_key(clock):
    m = manager("k1", "k2", "k3")
    last = InvokeRateLimitError("third")
    provider = Provider(InvokeRateLimitError("first"), InvokeAuthorizationError("second"), last)
    with pytest.raises(InvokeRateLimitError) as raised:
        dify.invoke_with_key_rotation(m, provider, stream=False)
    assert raised.value is last
    assert sorted(provider.attempts) == ["k1", "k2", "k3"], "each key tried once"
    with pytest.raises(dify.NoKeyAvailable, match="openai/gpt-4o"):
        dify.invoke_with_key_rotation(m, Provider(), stream=False)
    clock.advance(10.0)
    assert dify.invoke_with_key_rotation(m, Provider("back"), stream=False) == "back"


@pytest.mark.parametrize("error", [InvokeBadRequestError("400"), ValueError("a bug"),
                                   KeyError("x")])
def test_other_errors_raise_at_once_and_cool_nothing(clock, error):
    m = manager("k1", "k2")
    provider = Provider(error, "never")
    with pytest.raises(type(error)):
        dify.invoke_with_key_rotation(m, provider, stream=False)
    assert len(provider.attempts) == 1
    assert ttl("k1") == ttl("k2") == (False, 0)
    assert all(e["in_flight"] == 0 for e in m.balancer.endpoints())


def test_a_stream_fails_over_until_its_first_chunk(clock):
    m = manager("k1", "k2")
    provider = Provider(stream_of(InvokeRateLimitError("429 before any output")),
                        stream_of("a", "b", "c"))
    chunks = dify.invoke_with_key_rotation(m, provider, stream=True)
    failed, served = provider.attempts  # both attempts made before the stream was returned
    assert ttl(failed) == (True, 60)
    assert endpoint(m, served)["in_flight"] == 1, "the pick is held while the stream runs"
    assert list(chunks) == ["a", "b", "c"]
    assert endpoint(m, served)["in_flight"] == 0
    assert ttl(served) == (False, 0)


def test_no_failover_after_the_first_chunk(clock):
    m = manager("k1", "k2")
    provider = Provider(stream_of("a", InvokeRateLimitError("429 mid-stream")), "never")
    chunks = dify.invoke_with_key_rotation(m, provider, stream=True)
    assert next(chunks) == "a"
    with pytest.raises(InvokeRateLimitError, match="mid-stream"):
        next(chunks)
    assert len(provider.attempts) == 1, "the client already has output: no second key"
    assert ttl(provider.attempts[0]) == (True, 60), "the key still cools down"
    assert all(e["in_flight"] == 0 for e in m.balancer.endpoints())


def test_a_closed_stream_releases_its_pick_and_cools_nothing(clock):
    m = manager("k1")
    closed = []

    def chunks():
        try:
            yield from ("a", "b", "c")
        finally:
            closed.append(True)

    stream = dify.invoke_with_key_rotation(m, Provider(chunks()), stream=True)
    assert next(stream) == "a"
    stream.close()
    assert closed == [True], "the provider's stream is closed too"
    assert endpoint(m, "k1")["in_flight"] == 0
    assert ttl("k1") == (False, 0)


def test_an_empty_stream_and_a_blocking_answer_under_stream(clock):
    m = manager("k1")
    assert list(dify.invoke_with_key_rotation(m, Provider(stream_of()), stream=True)) == []
    result = {"usage": 1}  # Dify's LLMResult when the model does not stream: returned as is
    assert dify.invoke_with_key_rotation(m, Provider(result), stream=True) is result
    assert endpoint(m, "k1")["in_flight"] == 0


def test_hostile_arguments_name_the_argument(clock):
    configs = [Config("k1")]
    cases = [
        (lambda: dify.LBModelManager(None, "openai", "llm", "m", configs), TypeError,
         "tenant_id must be a str"),
        (lambda: dify.LBModelManager("t", "", "llm", "m", configs), sluice.InvalidArgument,
         "provider must not be empty"),
        (lambda: dify.LBModelManager("t", "p", 3, "m", configs), TypeError,
         "model_type must be a str or Dify's ModelType"),
        (lambda: dify.LBModelManager("t", "p", "llm", "m" * 100_000, configs),
         sluice.InvalidArgument, "model must be at most 512"),
        (lambda: dify.LBModelManager("t", "p", "llm", "m", [Config("\udcff")]),
         sluice.InvalidArgument, r"load_balancing_configs\[0\].id must be valid UTF-8"),
        (lambda: dify.LBModelManager("t", "p", "llm", "m", [Config(None)]), TypeError,
         r"load_balancing_configs\[0\].id must be a str"),
        (lambda: dify.LBModelManager("t", "p", "llm", "m", [Config("a"), Config("a")]),
         sluice.InvalidArgument, r"load_balancing_configs\[1\].id repeats"),
        (lambda: dify.LBModelManager("t", "p", "llm", "m", "k1"), TypeError,
         "load_balancing_configs must be a list"),
        (lambda: dify.LBModelManager("t", "p", "llm", "m", [Config(str(i)) for i in range(1025)]),
         sluice.InvalidArgument, "load_balancing_configs must hold at most 1024"),
        (lambda: dify.LBModelManager("t", "p", "llm", "m", configs, managed_credentials="x"),
         TypeError, "managed_credentials must be a dict"),
        (lambda: ttl(None), TypeError, "config_id must be a str"),
        (lambda: ttl(""), sluice.InvalidArgument, "config_id must not be empty"),
        (lambda: dify.configure_key_rotation("fleet"), sluice.InvalidArgument,
         "scope must be process, host or cluster"),
        (lambda: dify.configure_key_rotation("host", region_prefix="a/b"),
         sluice.InvalidArgument, "region_prefix must be 1 to 190"),
        (lambda: dify.configure_key_rotation("host", region_prefix="x" * 191),
         sluice.InvalidArgument, "region_prefix must be 1 to 190"),
        (lambda: dify.configure_key_rotation("host", clock=sluice.ManualClock()),
         sluice.InvalidArgument, "clock must be a steady clock in host scope"),
        (lambda: dify.configure_key_rotation("process", strategy="prefix_affinity"),
         sluice.InvalidArgument, "strategy must be least_request or round_robin"),
        (lambda: dify.invoke_with_key_rotation(object(), Provider(), stream=False), TypeError,
         "manager must be a sluice.dify.LBModelManager"),
        (lambda: dify.invoke_with_key_rotation(manager("k1"), "call", stream=False), TypeError,
         "call must be callable"),
        (lambda: dify.invoke_with_key_rotation(manager("k1"), Provider(), stream=1), TypeError,
         "stream must be a bool"),
    ]
    for make, error, message in cases:
        with pytest.raises(error, match=message):
            make()
    m = manager("k1")
    for expire, error in [(-1, sluice.InvalidArgument), (0, sluice.InvalidArgument),
                          (math.nan, sluice.InvalidArgument), (math.inf, sluice.InvalidArgument),
                          (86401, sluice.InvalidArgument), (True, TypeError), ("60", TypeError),
                          (None, TypeError)]:
        with pytest.raises(error, match="LBModelManager.cooldown: expire must be"):
            m.cooldown(Config("k1"), expire=expire)
    with pytest.raises(TypeError, match="LBModelManager.cooldown: config.id must be a str"):
        m.cooldown(object())
    with pytest.raises(sluice.InvalidArgument, match="in_cooldown: config.id must not be empty"):
        m.in_cooldown(Config(""))
    assert ttl("k1") == (False, 0), "nothing was cooled by a refused call"
    assert dify.key_rotation_settings()["scope"] == "process", "refused settings change nothing"


# ---- host scope: two processes ----------------------------------------------------------------

WORKER = textwrap.dedent("""
    import json, sys
    import sluice.dify as dify

    class InvokeRateLimitError(Exception):
        pass

    class Config:
        def __init__(self, id):
            self.id, self.name, self.credentials = id, id, {}

    dify.configure_key_rotation("host", region_prefix=sys.argv[1])
    tuple_ = ("tenant-1", "openai", "llm", "gpt-4o")
    if sys.argv[2] == "hit":
        m = dify.LBModelManager(*tuple_, [Config("k1"), Config("k2")])
        seen = []
        def call(config):
            seen.append(config.id)
            if config.id == "k1":
                raise InvokeRateLimitError("429")
            return "ok"
        for _ in range(200):
            assert dify.invoke_with_key_rotation(m, call, stream=False) == "ok"
            if "k1" in seen:
                break
        print(json.dumps({"seen": seen}))
    else:
        print(json.dumps({"ttl": dify.LBModelManager.get_config_in_cooldown_and_ttl(
            *tuple_, "k1")}))
""")


def run_worker(tmp_path, prefix, mode):
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    result = subprocess.run([sys.executable, str(script), prefix, mode], capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_two_processes_share_a_cooldown_in_host_scope(tmp_path):
    prefix = dify_support.unique_name("keyrot")
    previous = dify.configure_key_rotation("host", region_prefix=prefix)
    try:
        other = run_worker(tmp_path, prefix, "hit")  # another worker meets a 429 on k1
        assert "k1" in other["seen"]
        m = dify.LBModelManager("tenant-1", "openai", "llm", "gpt-4o",
                                [Config("k1"), Config("k2")])
        assert {m.fetch_next().id for _ in range(50)} == {"k2"}, "this worker never gets k1"
        assert m.in_cooldown(Config("k1"))
        in_cooldown, seconds = dify.LBModelManager.get_config_in_cooldown_and_ttl(
            "tenant-1", "openai", "llm", "gpt-4o", "k1")
        assert in_cooldown and 1 <= seconds <= 60
        assert endpoint(m, "k1")["cooldown_reason"] == "rate_limited"
        m.restore(Config("k1"))  # the console of this process, for the whole host
        assert run_worker(tmp_path, prefix, "console")["ttl"] == [False, 0]
        assert "k1" in {m.fetch_next().id for _ in range(50)}
    finally:
        dify.configure_key_rotation(**previous)
        dify_support.remove_regions(prefix)
