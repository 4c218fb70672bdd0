"""sluice.Balancer from Python: strategies, cooldowns on a ManualClock, parsers."""

import json
import multiprocessing
import os
import threading

import pytest

import sluice
from balancer_support import chat_turns


def _chat(system, *turns):
    messages = [{"role": "system", "content": system}]
    for i, text in enumerate(turns):
        messages.append({"role": "user" if i % 2 == 0 else "assistant", "content": text})
    return json.dumps({"model": "qwen", "stream": True, "messages": messages})


def test_parse_request_and_errors_name_the_field():
    r = sluice.parse_request(b'{"model":"m","messages":[{"role":"user","content":[{"type":"text","text":"hi"}]}]}')
    assert r.model == "m" and not r.stream
    assert [(m.role, m.content) for m in r.messages] == [("user", "hi")]
    assert r.prompt_chars == 2 and r.estimated_prompt_tokens == 1
    assert len(sluice.prefix_block_hashes(r, block_chars=1)) == len("user\x1fhi\x1e")
    with pytest.raises(sluice.InvalidArgument, match=r"messages\[0\]\.role"):
        sluice.parse_request(b'{"model":"m","messages":[{"content":"x"}]}')
    with pytest.raises(ValueError, match="not valid JSON"):
        sluice.parse_request(b"{")


def test_parse_engine_metrics():
    m = sluice.parse_engine_metrics(
        'vllm:num_requests_waiting{model_name="q"} 2\nsglang:num_running_reqs 3\n'
        "vllm:gpu_cache_usage_perc 0.5\n")
    assert (m.waiting, m.running, m.kv_usage) == (2.0, 3.0, 0.5)
    with pytest.raises(sluice.InvalidArgument, match="line 1"):
        sluice.parse_engine_metrics("vllm:num_requests_waiting x")


def test_prefix_affinity_sends_a_conversation_home():
    b = sluice.Balancer("prefix_affinity", seed=1)
    for i in range(3):
        b.add_endpoint(f"r{i}", labels={"model": "qwen", "url": f"http://r{i}"})
    held = [b.pick(_chat(f"system {n} " * 60, "question")) for n in range(6)]
    homes = {n: pick.endpoint_id for n, pick in enumerate(held)}
    assert all(p.label("url") == f"http://{p.endpoint_id}" for p in held)
    assert sorted(homes.values()) == ["r0", "r0", "r1", "r1", "r2", "r2"]  # new ones spread by load
    for pick in held:
        pick.complete(status=200)
    for n in range(6):
        with b.pick(_chat(f"system {n} " * 60, "question", "answer", "more")) as pick:
            assert pick.endpoint_id == homes[n]
            assert pick.matched_blocks > 0
    assert all(e["in_flight"] == 0 and e["completions"] == 4 for e in b.endpoints())


def test_credential_rotation_cools_keys_down_on_a_manual_clock():
    clock = sluice.ManualClock()
    b = sluice.Balancer("round_robin", clock=clock)
    b.add_endpoint("k1", labels={"api_key": "sk-1"})
    b.add_endpoint("k2", labels={"api_key": "sk-2"})
    first = b.pick()
    assert first.labels == {"api_key": "sk-1"}
    first.complete(status=429)
    assert {b.pick().endpoint_id for _ in range(3)} == {"k2"}  # collected picks: abandoned
    b.pick().complete(error="auth")
    with pytest.raises(sluice.Error, match="cooling down"):
        b.pick()
    clock.advance(10)
    assert b.pick().endpoint_id == "k2"
    clock.advance(50)
    assert "k1" in {b.pick().endpoint_id for _ in range(2)}
    with pytest.raises(sluice.InvalidArgument, match="error must be"):
        b.pick().complete(error="boom")


def test_exceptions_abandon_the_pick_and_errors_name_fields():
    b = sluice.Balancer()
    b.add_endpoint("a", max_concurrency=1, labels={"model": "m"})
    with pytest.raises(RuntimeError):
        with b.pick(model="m"):
            raise RuntimeError("upstream broke")
    (stats,) = b.endpoints()
    assert stats["errors"] == 1 and stats["in_flight"] == 0
    held = b.pick(model="m")
    with pytest.raises(sluice.CapacityError):
        b.pick(model="m")
    held.complete(status=200, ttft=0.1, latency=1.0)
    with pytest.raises(sluice.NotFound):
        b.pick(model="other")
    with pytest.raises(sluice.InvalidArgument, match="strategy must be one of"):
        sluice.Balancer("fastest")
    with pytest.raises(sluice.InvalidArgument, match="weights has no 'speed'"):
        sluice.Balancer("scored", weights={"speed": 1})
    with pytest.raises(sluice.InvalidArgument, match="endpoint 'x'.weight"):
        b.add_endpoint("x", weight=0)


def test_scored_follows_metrics_and_picks_from_many_threads():
    b = sluice.Balancer("scored", weights={"prefix": 0, "queue": 1, "kv_cache": 1, "in_flight": 0})
    b.add_endpoint("busy")
    b.add_endpoint("idle")
    b.update_metrics("busy", "vllm:num_requests_waiting 30\nvllm:kv_cache_usage_perc 0.9\n")
    b.update_metrics("idle", "vllm:num_requests_waiting 0\nvllm:kv_cache_usage_perc 0.1\n")
    assert b.pick().endpoint_id == "idle"

    def work():
        for _ in range(500):
            b.pick().complete(status=200)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(e["completions"] for e in b.endpoints()) == 2001
    assert all(e["in_flight"] == 0 for e in b.endpoints())


def _hold_picks_and_exit(region, n, ready):
    b = sluice.Balancer(shared_region=region)
    b.add_endpoint("a")
    held = [b.pick() for _ in range(n)]
    ready.put(len(held))
    ready.close()
    ready.join_thread()  # put() is flushed by a feeder thread that _exit would kill
    os._exit(0)  # dies with its picks in flight: their leases stay until they expire


def test_shared_region_balances_a_hosts_processes_together(region):
    ctx = multiprocessing.get_context("spawn")
    ready = ctx.Queue()
    worker = ctx.Process(target=_hold_picks_and_exit, args=(region, 4, ready))
    worker.start()
    assert ready.get(timeout=60) == 4
    worker.join(timeout=60)
    b = sluice.Balancer("least_request", shared_region=region, shared_lease=600)
    b.add_endpoint("a")
    b.add_endpoint("b")
    # The dead worker's four picks on "a" still count: new work goes to "b".
    assert [b.pick().endpoint_id for _ in range(3)] == ["b", "b", "b"]


def _route_first_turns(region, conversations, result):
    b = sluice.Balancer("prefix_affinity", shared_region=region)
    for name in "abcd":
        b.add_endpoint(name)
    routed = {}
    for c in conversations:
        pick = b.pick(chat_turns(c, 1))
        routed[c] = pick.endpoint_id
        pick.complete(status=200)
    result.put(routed)
    result.close()
    result.join_thread()
    os._exit(0)


def test_shared_region_shares_prefix_routes_between_processes(region):
    """A conversation's next turn in another worker goes where the first worker sent it."""
    ctx = multiprocessing.get_context("spawn")
    result = ctx.Queue()
    worker = ctx.Process(target=_route_first_turns, args=(region, range(12), result))
    worker.start()
    routed = result.get(timeout=60)
    worker.join(timeout=60)
    assert worker.exitcode == 0
    here = sluice.Balancer("prefix_affinity", shared_region=region)
    alone = sluice.Balancer("prefix_affinity")  # learns only from its own picks
    for b in (here, alone):
        for name in "abcd":
            b.add_endpoint(name)
    moved_here = moved_alone = 0
    for c, endpoint in routed.items():
        pick = here.pick(chat_turns(c, 2))
        moved_here += pick.endpoint_id != endpoint or pick.matched_blocks == 0
        pick.complete(status=200)
        pick = alone.pick(chat_turns(c, 2))
        moved_alone += pick.endpoint_id != endpoint
        pick.complete(status=200)
    assert moved_here == 0
    assert moved_alone > 0  # the check above is not vacuous
    assert len(set(routed.values())) > 1  # twelve conversations spread, not piled


def test_weighted_round_robin_and_consistent_hash():
    wrr = sluice.Balancer("weighted_round_robin")
    wrr.add_endpoint("a", weight=5)
    wrr.add_endpoint("b")
    wrr.add_endpoint("c")
    assert "".join(wrr.pick().endpoint_id for _ in range(7)) == "aabacaa"

    ch = sluice.Balancer("consistent_hash")
    for name in "abcd":
        ch.add_endpoint(name)
    home = ch.pick(affinity_key="user-42").endpoint_id
    assert all(ch.pick(affinity_key="user-42").endpoint_id == home for _ in range(20))
    held = [ch.pick(affinity_key="user-42") for _ in range(12)]  # bounded load spills over
    assert max(e["in_flight"] for e in ch.endpoints()) <= 4
    del held


def test_administration_cooldown_eject_restore_on_a_manual_clock():
    clock = sluice.ManualClock()
    clock.advance(100)
    b = sluice.Balancer("round_robin", clock=clock)
    b.add_endpoint("k1")
    b.add_endpoint("k2")
    b.cooldown("k1", 30, reason="rate_limited")
    assert {b.pick().endpoint_id for _ in range(4)} == {"k2"}
    k1 = next(e for e in b.endpoints() if e["id"] == "k1")
    assert k1["cooldown_until"] == 130.0
    assert k1["cooldown_remaining"] == 30.0
    assert k1["cooldown_reason"] == "rate_limited"
    assert k1["ejected_until"] is None and k1["ejected_remaining"] == 0.0
    clock.advance(10)
    k1 = next(e for e in b.endpoints() if e["id"] == "k1")
    assert k1["cooldown_remaining"] == 20.0  # the console's TTL
    b.restore("k1")
    k1 = next(e for e in b.endpoints() if e["id"] == "k1")
    assert k1["cooldown_until"] is None and k1["cooldown_reason"] is None
    assert "k1" in {b.pick().endpoint_id for _ in range(2)}

    b.eject("k2", 5)
    k2 = next(e for e in b.endpoints() if e["id"] == "k2")
    assert k2["ejected_until"] == 115.0 and k2["ejected_remaining"] == 5.0
    assert {b.pick().endpoint_id for _ in range(3)} == {"k1"}
    b.cooldown("k1", 60)  # administered, no class
    assert next(e for e in b.endpoints() if e["id"] == "k1")["cooldown_reason"] is None
    with pytest.raises(sluice.Error, match="cooling down or ejected"):
        b.pick()
    clock.advance(5)
    assert b.pick().endpoint_id == "k2"

    pick = b.pick()
    pick.complete(status=503)
    k2 = next(e for e in b.endpoints() if e["id"] == "k2")
    assert k2["last_failure"] == "server" and k2["last_failure_at"] == 115.0
    assert k2["host_in_flight"] == 0 and k2["times_ejected"] == 0


def test_administration_errors_name_the_argument():
    b = sluice.Balancer()
    b.add_endpoint("a")
    for bad in (0, -1, float("nan"), float("inf"), 86400.5):
        with pytest.raises(sluice.InvalidArgument,
                           match=r"sluice\.Balancer\.cooldown: seconds must be > 0 and at most 86400, got"):
            b.cooldown("a", bad)
        with pytest.raises(sluice.InvalidArgument, match=r"sluice\.Balancer\.eject: seconds must be"):
            b.eject("a", bad)
    with pytest.raises(sluice.InvalidArgument, match=r"sluice\.Balancer\.cooldown: reason must be None or a failure class .*; got 'boom'"):
        b.cooldown("a", 1, reason="boom")
    for call in (lambda: b.cooldown("nope", 1), lambda: b.eject("nope", 1), lambda: b.restore("nope")):
        with pytest.raises(sluice.NotFound, match="no endpoint 'nope'"):
            call()
    b.cooldown("a", 86400)  # the maximum is accepted
    b.eject("a", 86400)


def _cool_down_by_a_429(region):
    b = sluice.Balancer("round_robin", shared_region=region, cooldown_rate_limited=3600)
    b.add_endpoint("k1")
    b.pick().complete(status=429)
    os._exit(0)


def _picks_k1(region, result):
    b = sluice.Balancer("round_robin", shared_region=region)
    b.add_endpoint("k1")
    try:
        result.put(b.pick().endpoint_id)
    except sluice.Error as e:
        result.put(str(e))
    result.close()
    result.join_thread()
    os._exit(0)


def test_shared_region_shares_cooldowns_between_processes(region):
    ctx = multiprocessing.get_context("spawn")
    worker = ctx.Process(target=_cool_down_by_a_429, args=(region,))
    worker.start()
    worker.join(timeout=60)
    assert worker.exitcode == 0
    b = sluice.Balancer("round_robin", shared_region=region)
    b.add_endpoint("k1")
    b.add_endpoint("k2")
    # The worker's 429 holds here: k1 is skipped, and the console shows why and for how long.
    assert {b.pick().endpoint_id for _ in range(3)} == {"k2"}
    k1 = next(e for e in b.endpoints() if e["id"] == "k1")
    assert k1["cooldown_reason"] == "rate_limited"
    assert 0 < k1["cooldown_remaining"] <= 3600
    assert k1["last_failure"] is None  # the failure was the worker's
    # Restored here: back for the next worker.
    b.restore("k1")
    result = ctx.Queue()
    worker = ctx.Process(target=_picks_k1, args=(region, result))
    worker.start()
    assert result.get(timeout=60) == "k1"
    worker.join(timeout=60)
