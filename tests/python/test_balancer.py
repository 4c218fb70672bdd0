"""sluice.Balancer from Python: strategies, cooldowns on a ManualClock, parsers."""

import json
import multiprocessing
import os
import threading

import pytest

import sluice


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
