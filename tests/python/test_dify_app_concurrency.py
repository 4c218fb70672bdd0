"""sluice.dify.RateLimit: Dify's per-app concurrency cap (dify-integration.md section 1), exact,
leased, nested enters counted once, streams held until they end."""

from __future__ import annotations

import math
import os
import subprocess
import sys
import textwrap

import pytest

import sluice
import sluice.dify as dify
from sluice.dify import RateLimit, RateLimitGenerator, rate_limit_context

import dify_support


@pytest.fixture(autouse=True)
def backend():
    backend = dify_support.fresh_backend()
    yield backend
    dify.configure(None)
    RateLimit._instances.clear()


def app(tag: str = "app") -> str:
    return dify_support.unique_name(tag)


def test_cap_admits_exactly_max_then_refuses_with_difys_message():
    client = app()
    limit = RateLimit(client, 3)
    ids = [limit.enter() for _ in range(3)]
    assert len(set(ids)) == 3 and limit.active_requests() == 3
    with pytest.raises(dify.AppInvokeQuotaExceededError) as refused:
        limit.enter()
    assert str(refused.value) == (
        "Too many requests. Please try again later. The current maximum concurrent requests "
        f"allowed for {client} is 3.")
    assert type(refused.value).__name__ == "AppInvokeQuotaExceededError"
    assert isinstance(refused.value, ValueError)
    assert refused.value.max_active_requests == 3 and refused.value.client_id == client
    assert any(name == "Retry-After" for name, _ in refused.value.headers)
    limit.exit(ids[0])
    assert limit.enter("next") == "next"


def test_one_instance_per_client_and_the_cap_changes_at_run_time():
    client = app()
    first = RateLimit(client, 2)
    held = [first.enter(), first.enter()]
    assert RateLimit(client, 3) is first and first.max_active_requests == 3
    third = first.enter()                       # the raised cap applies to the next enter
    RateLimit(client, 1)                        # lowered below what is held: refuses ...
    with pytest.raises(dify.AppInvokeQuotaExceededError):
        first.enter()
    for request_id in held:                     # ... until enough are released
        first.exit(request_id)
    with pytest.raises(dify.AppInvokeQuotaExceededError):
        first.enter()                           # still 1 held (third) = the cap
    first.exit(third)
    assert first.enter("again") == "again"


def test_caps_are_per_app():
    a, b = RateLimit(app("a"), 1), RateLimit(app("b"), 1)
    a.enter()
    assert b.enter("b-1") == "b-1"
    with pytest.raises(dify.AppInvokeQuotaExceededError):
        a.enter()


def test_client_ids_with_separators_stay_distinct_keys():
    base = app()
    one, two = RateLimit(f"{base}/x", 1), RateLimit(f"{base}%2Fx", 1)
    one.enter()
    two.enter()       # "a/x" and "a%2Fx" must not share a slot (the Governor escapes / and %)


def test_disabled_when_zero_returns_the_unlimited_id():
    limit = RateLimit(app(), 0)
    assert limit.disabled()
    assert {limit.enter() for _ in range(100)} == {RateLimit._UNLIMITED_REQUEST_ID}
    limit.exit(RateLimit._UNLIMITED_REQUEST_ID)  # a no-op


def test_nested_enter_of_one_request_id_counts_once_and_holds_until_the_last_exit():
    # Dify #35895: _stream_workflow enters the request id again inside rate_limit_context and
    # exits it before the stream runs; with cap 1 every streaming workflow was refused, and with
    # cap >= 2 the stream ran holding no slot.
    limit = RateLimit(app(), 1)
    request_id = limit.enter("run-1")
    with rate_limit_context(limit, request_id) as inner:
        assert inner == request_id
        assert limit.active_requests() == 1
    assert limit.active_requests() == 1, "the outer enter still holds the slot"
    with pytest.raises(dify.AppInvokeQuotaExceededError):
        limit.enter("run-2")
    limit.exit(request_id)
    assert limit.enter("run-2") == "run-2"


def test_exit_of_unknown_or_repeated_ids_is_ignored():
    limit = RateLimit(app(), 1)
    request_id = limit.enter()
    limit.exit("never-entered")
    limit.exit(request_id)
    limit.exit(request_id)
    limit.exit(None)  # type: ignore[arg-type]
    other = limit.enter()
    with pytest.raises(dify.AppInvokeQuotaExceededError):
        limit.enter()      # the repeated exit did not free a second slot
    limit.exit(other)


def test_rate_limit_context_releases_when_the_block_raises():
    limit = RateLimit(app(), 1)
    with pytest.raises(KeyError):
        with rate_limit_context(limit, None):
            raise KeyError("boom")
    assert limit.active_requests() == 0
    limit.enter()


def test_blocking_answer_releases_at_once():
    limit = RateLimit(app(), 1)
    request_id = limit.enter()
    answer = {"answer": "hi"}
    assert limit.generate(answer, request_id) is answer
    assert limit.active_requests() == 0


def stream(chunks, fail_at=None):
    for i, chunk in enumerate(chunks):
        if i == fail_at:
            raise RuntimeError("provider broke")
        yield chunk


def test_stream_holds_its_slot_until_exhausted():
    limit = RateLimit(app(), 1)
    wrapped = limit.generate(stream(["a", "b"]), limit.enter())
    assert isinstance(wrapped, RateLimitGenerator)
    assert next(wrapped) == "a"
    with pytest.raises(dify.AppInvokeQuotaExceededError):
        limit.enter()
    assert list(wrapped) == ["b"]
    assert limit.active_requests() == 0 and wrapped.closed


def test_stream_releases_when_it_raises():
    # Dify #11540: a streaming exception leaked the slot.
    limit = RateLimit(app(), 1)
    wrapped = limit.generate(stream(["a", "b"], fail_at=1), limit.enter())
    next(wrapped)
    with pytest.raises(RuntimeError):
        next(wrapped)
    assert limit.active_requests() == 0


def test_stream_releases_when_the_client_goes_away():
    limit = RateLimit(app(), 1)
    inner = stream(["a", "b", "c"])
    wrapped = limit.generate(inner, limit.enter())
    next(wrapped)
    wrapped.close()                     # the WSGI server closes the response iterable
    wrapped.close()
    assert limit.active_requests() == 0
    assert inner.gi_frame is None, "the wrapped generator is closed too"
    with pytest.raises(StopIteration):
        next(wrapped)


def test_stream_from_a_callable_and_a_dropped_stream_release():
    limit = RateLimit(app(), 1)
    wrapped = limit.generate(lambda: stream(["x"]), limit.enter())
    assert list(wrapped) == ["x"]
    dropped = limit.generate(stream(["y"]), limit.enter())
    del dropped                         # collected without close(): the slot comes back
    assert limit.active_requests() == 0


def test_leases_expire_so_a_lost_holder_cannot_leak_the_slot():
    clock = sluice.ManualClock(1000.0)
    name = dify_support.unique_name()
    governor = sluice.Governor(dify.policy("process", name=name, lease=60.0), clock=clock)
    dify.configure(dify.AppConcurrency(governor))
    RateLimit._instances.clear()
    limit = RateLimit(app(), 1)
    limit.enter("lost")                 # its holder never exits
    with pytest.raises(dify.AppInvokeQuotaExceededError):
        limit.enter("next")
    clock.advance(61.0)
    assert limit.enter("next") == "next"


def test_cap_above_the_rules_ceiling_is_refused_by_name():
    dify_support.fresh_backend(ceiling=4)
    with pytest.raises(sluice.InvalidArgument, match="max_active_requests must be at most"):
        RateLimit(app(), 5).enter()


@pytest.mark.parametrize("client_id, error, text", [
    (None, TypeError, "client_id must be a str"),
    ("", sluice.InvalidArgument, "client_id must not be empty"),
    ("x" * 100_000, sluice.InvalidArgument, "client_id must be at most"),
    ("\udcff-app", sluice.InvalidArgument, "client_id must be valid UTF-8"),
    (b"app", TypeError, "client_id must be a str"),
])
def test_hostile_client_ids_name_the_argument(client_id, error, text):
    with pytest.raises(error, match=text):
        RateLimit(client_id, 1)


@pytest.mark.parametrize("cap, error, text", [
    (-1, sluice.InvalidArgument, "max_active_requests must be an integer >= 0, got -1"),
    (math.nan, sluice.InvalidArgument, "max_active_requests must be an integer >= 0, got nan"),
    (2.5, TypeError, "max_active_requests must be an int"),
    (True, TypeError, "max_active_requests must be an int"),
    (None, TypeError, "max_active_requests must be an int"),
])
def test_hostile_caps_name_the_argument(cap, error, text):
    with pytest.raises(error, match=text):
        RateLimit(app(), cap)


@pytest.mark.parametrize("request_id, error, text", [
    (b"id", TypeError, "request_id must be a str"),
    ("r" * 100_000, sluice.InvalidArgument, "request_id must be at most"),
    ("\ud800", sluice.InvalidArgument, "request_id must be valid UTF-8"),
    (7, TypeError, "request_id must be a str"),
])
def test_hostile_request_ids_name_the_argument_and_take_no_slot(request_id, error, text):
    limit = RateLimit(app(), 1)
    with pytest.raises(error, match=text):
        limit.enter(request_id)
    assert limit.active_requests() == 0
    limit.enter("fine")


def test_empty_request_id_gets_a_new_one():
    limit = RateLimit(app(), 2)
    request_id = limit.enter("")
    assert request_id and request_id != RateLimit._UNLIMITED_REQUEST_ID


# ---- processes: host scope ----------------------------------------------------------------------

CONTENTION = textwrap.dedent("""
    import multiprocessing as mp, sys, threading
    import sluice, sluice.dify as dify

    NAME, ROUNDS = sys.argv[1], int(sys.argv[2])
    PROCESSES, THREADS, CAP = 4, 10, 5

    def governor():
        return sluice.Governor(dify.policy("host", name=NAME, ceiling=16, max_apps=64))

    def worker(start, tried, counted, released, admitted, counts, lock):
        dify.configure(dify.AppConcurrency(governor(), ceiling=16))   # each worker its own
        limit = dify.RateLimit("app-contended", CAP)
        def entrant(rnd):
            start.wait(60)
            request_id = None
            try:
                request_id = limit.enter()
                with lock:
                    admitted.value += 1
            except dify.AppInvokeQuotaExceededError:
                pass
            if tried.wait(60) == 0:     # all 40 have tried; the admitted still hold their slots
                counts[rnd] = admitted.value
            counted.wait(60)
            if request_id is not None:
                limit.exit(request_id)
                with lock:
                    admitted.value -= 1
            released.wait(60)
        for rnd in range(ROUNDS):
            threads = [threading.Thread(target=entrant, args=(rnd,)) for _ in range(THREADS)]
            for t in threads: t.start()
            for t in threads: t.join()

    if __name__ == "__main__":
        made = governor()           # the region exists before the workers open it
        ctx = mp.get_context("fork")
        barriers = [ctx.Barrier(PROCESSES * THREADS) for _ in range(4)]
        admitted, lock = ctx.Value("i", 0), ctx.Lock()
        counts = ctx.Array("i", [-1] * ROUNDS)
        procs = [ctx.Process(target=worker, args=(*barriers, admitted, counts, lock))
                 for _ in range(PROCESSES)]
        for p in procs: p.start()
        for p in procs: p.join(150)
        print("ROUNDS", list(counts), "LEFT", admitted.value,
              "CODES", [p.exitcode for p in procs])
""")



def test_cap_5_with_40_simultaneous_entrants_from_4_processes_admits_exactly_5(tmp_path):
    # Dify #39177: HLEN then HSET admitted 7-15 of 40 with cap 5.
    script = tmp_path / "contention.py"
    script.write_text(CONTENTION)
    name = dify_support.unique_name("contention")
    try:
        result = subprocess.run([sys.executable, str(script), name, "5"], capture_output=True,
                                text=True, timeout=180)
    finally:
        dify_support.remove_regions(name)
    assert result.returncode == 0, result.stderr
    assert "ROUNDS [5, 5, 5, 5, 5] LEFT 0 CODES [0, 0, 0, 0]" in result.stdout, \
        result.stdout + result.stderr


FORK = textwrap.dedent("""
    import os, sys
    import sluice, sluice.dify as dify

    NAME = sys.argv[1]
    dify.configure(dify.AppConcurrency(sluice.Governor(dify.policy("host", name=NAME, ceiling=4,
                                                                    max_apps=16)), ceiling=4))
    limit = dify.RateLimit("forked-app", 1)
    held = limit.enter("parent-request")
    pid = os.fork()
    if pid == 0:
        code = 0
        try:
            limit.exit(held)                      # the parent's slot: not the child's to give
            try:
                limit.enter("child-request")
                code = 2                          # admitted: the parent's slot was released
            except dify.AppInvokeQuotaExceededError:
                pass
        except BaseException:
            code = 3
        os._exit(code)
    _, status = os.waitpid(pid, 0)
    child = os.waitstatus_to_exitcode(status)
    try:
        limit.enter("parent-second")
        still_held = False
    except dify.AppInvokeQuotaExceededError:
        still_held = True
    limit.exit(held)
    print("CHILD", child, "HELD", still_held, "AFTER", limit.enter("parent-third"))
""")


def test_a_forked_child_neither_releases_nor_reuses_the_parents_slots(tmp_path):
    script = tmp_path / "fork.py"
    script.write_text(FORK)
    name = dify_support.unique_name("fork")
    try:
        result = subprocess.run([sys.executable, str(script), name], capture_output=True,
                                text=True, timeout=60)
    finally:
        dify_support.remove_regions(name)
    assert result.returncode == 0, result.stderr
    assert "CHILD 0 HELD True AFTER parent-third" in result.stdout, result.stdout + result.stderr


class ScriptedGovernor:
    """A Governor-shaped fake whose admit answers come from a script: (allowed, remaining)."""

    rule_names = [dify.RULE]

    def __init__(self, answers):
        self.answers = list(answers)
        self.admits = 0
        self.caps = []

    def set_key_limits(self, rule, key, *, concurrency):
        self.caps.append((rule, key, concurrency))

    def admit(self, attributes):
        self.admits += 1
        allowed, remaining = self.answers.pop(0)

        class Decision:
            retry_after = 1.0

        Decision.remaining = remaining

        class Answer:
            rule = dify.RULE
            decision = Decision()

            def __bool__(self):
                return allowed

            def headers(self):
                return [("Retry-After", "1")]

            def release(self):
                pass
        return Answer()


def test_a_refusal_that_still_saw_room_is_a_lost_race_and_is_tried_again():
    # Host scope, per-call cap below the region's slots: two callers racing for the last slot
    # may both give it back (sluice/concurrency_limiter.h). Such a refusal reports room left.
    governor = ScriptedGovernor([(False, 1), (False, 1), (True, 0)])
    dify.configure(dify.AppConcurrency(governor))
    assert RateLimit("raced/app", 2).enter("r") == "r"
    assert governor.admits == 3
    assert governor.caps == [(dify.RULE, "raced%2Fapp", 2)], "set once, escaped as the rule's key"


def test_a_full_app_is_refused_at_once():
    governor = ScriptedGovernor([(False, 0)])
    dify.configure(dify.AppConcurrency(governor))
    with pytest.raises(dify.AppInvokeQuotaExceededError):
        RateLimit(app(), 2).enter()
    assert governor.admits == 1


def test_cluster_policy_waits_for_redis_longer_than_the_stores_default():
    """A 5 ms store default sent late replies to the failure mode, which admitted on top of the
    slots Redis held (the end-to-end benchmark: 12 at once against a cap of 6)."""
    import json
    document = json.loads(dify.policy("cluster", redis_url="redis://127.0.0.1:1/0"))
    assert document["stores"][0]["command_timeout"] == "0.1s"
    document = json.loads(dify.policy("cluster", redis_url="redis://127.0.0.1:1/0",
                                      command_timeout=0.25))
    assert document["stores"][0]["command_timeout"] == "0.25s"
    for bad, error in [(0, sluice.InvalidArgument), (float("nan"), sluice.InvalidArgument),
                       (-1, sluice.InvalidArgument), ("50ms", TypeError), (None, TypeError)]:
        with pytest.raises(error, match="command_timeout"):
            dify.policy("cluster", redis_url="redis://127.0.0.1:1/0", command_timeout=bad)
    # The Governor takes the policy as written (a store needs no live Redis to be created).
    sluice.Governor(dify.policy("cluster", redis_url="redis://127.0.0.1:1/0", command_timeout=0.25))


def test_cluster_policy_without_a_url_takes_difys_redis_settings():
    """Dify's REDIS_* settings (standalone, Sentinel, Cluster, TLS) become the policy's store, and
    the Governor takes it; without a URL or settings that name a Redis, the error names one."""
    import json
    sentinel = {"REDIS_USE_SENTINEL": "true", "REDIS_SENTINELS": "10.0.0.1:26379,10.0.0.2:26379",
                "REDIS_SENTINEL_SERVICE_NAME": "mymaster", "REDIS_PASSWORD": "data-pw",
                "REDIS_SENTINEL_PASSWORD": "sentinel-pw", "REDIS_DB": "2"}
    store = json.loads(dify.policy("cluster", settings=sentinel))["stores"][0]
    assert store["sentinel_master"] == "mymaster"
    assert store["sentinels"] == ["10.0.0.1:26379", "10.0.0.2:26379"]
    assert store["password"] == "data-pw" and store["sentinel_password"] == "sentinel-pw"
    assert store["db"] == 2 and store["command_timeout"] == "0.1s"
    sluice.Governor(dify.policy("cluster", settings=sentinel))

    cluster = {"REDIS_USE_CLUSTERS": "true", "REDIS_CLUSTERS": "n1:7000,n2:7000",
               "REDIS_CLUSTERS_PASSWORD": "c-pw", "REDIS_USE_SSL": "true",
               "REDIS_SSL_CERT_REQS": "CERT_NONE"}
    store = json.loads(dify.policy("cluster", settings=cluster))["stores"][0]
    assert store["cluster_nodes"] == ["n1:7000", "n2:7000"]
    assert store["tls"] == {"verify_peer": False}
    sluice.Governor(dify.policy("cluster", settings=cluster))

    standalone = {"REDIS_HOST": "redis.internal", "REDIS_PORT": "6380", "REDIS_USE_SSL": "true"}
    store = json.loads(dify.policy("cluster", settings=standalone))["stores"][0]
    assert (store["host"], store["port"], store["tls"]) == ("redis.internal", 6380, True)
    sluice.Governor(dify.policy("cluster", settings=standalone))

    # A URL wins over the settings.
    store = json.loads(dify.policy("cluster", redis_url="redis://h:1/0", settings=sentinel))
    assert store["stores"][0]["url"] == "redis://h:1/0"
    assert "sentinel_master" not in store["stores"][0]
    with pytest.raises(ValueError, match="REDIS_SENTINEL_SERVICE_NAME"):
        dify.policy("cluster", settings={"REDIS_USE_SENTINEL": "true",
                                         "REDIS_SENTINELS": "s:26379"})
