"""Cache keys and the in-process ResponseCache from Python."""

import json
import random

import pytest

import sluice


def body(**fields):
    request = {"model": "gpt-4o", "messages": [{"role": "user", "content": "Hi"}], **fields}
    return json.dumps(request).encode()


def test_key_order_whitespace_and_transport_fields_do_not_change_the_key():
    a = sluice.cache_key(body(temperature=0.7, stream=True, user="u1"), "tenant-1")
    shuffled = {"user": "u2", "temperature": 0.70, "stream": False, "model": "gpt-4o",
                "messages": [{"content": "Hi", "role": "user"}]}
    b = sluice.cache_key(json.dumps(shuffled, indent=2).encode(), "tenant-1")
    assert a == b and a.digest == b.digest and hash(a) == hash(b)
    assert a != sluice.cache_key(body(temperature=0.8), "tenant-1")
    assert a != sluice.cache_key(body(temperature=0.7), "tenant-2")
    assert a.canonical.startswith(b"tenant-1\x1f{")
    assert sluice.cache_key(body(user="x"), exclude=[]) != sluice.cache_key(body(user="y"), exclude=[])


def test_canonical_json_is_rfc_8785_and_python_json_is_not():
    raw = b'{"b": [1.0, 1e-5, 1E30, 4.50], "a": "\\u20ac"}'
    assert sluice.canonical_json(raw) == '{"a":"€","b":[1,0.00001,1e+30,4.5]}'.encode()
    python = json.dumps(json.loads(raw), sort_keys=True, separators=(",", ":"))
    assert python.encode() != sluice.canonical_json(raw)  # 1.0, 1e-05, 1e+30 differ
    with pytest.raises(sluice.InvalidArgument, match="duplicate member name"):
        sluice.canonical_json(b'{"a":1,"a":2}')
    with pytest.raises(sluice.InvalidArgument):
        sluice.cache_key(b"[1]")


def test_dicts_built_in_any_order_give_one_key():
    rng = random.Random(5)
    fields = {f"k{i}": rng.random() for i in range(8)}
    first = sluice.cache_key(json.dumps(fields).encode())
    for _ in range(20):
        items = list(fields.items())
        rng.shuffle(items)
        assert sluice.cache_key(json.dumps(dict(items)).encode()) == first


def test_cache_stores_bodies_and_streams_and_expires_them():
    clock = sluice.ManualClock()
    cache = sluice.ResponseCache(max_bytes=1 << 20, default_ttl=60, clock=clock)
    key, stream_key = sluice.cache_key(body()), sluice.cache_key(body(n=2))
    assert cache.get(key) is None
    assert cache.put(key, b'{"choices":[]}')
    assert cache.put(stream_key, [b"data: {}\n\n", b"data: [DONE]\n\n"], ttl=5)
    assert cache.get(key) == b'{"choices":[]}'
    assert cache.get(stream_key) == [b"data: {}\n\n", b"data: [DONE]\n\n"]
    clock.advance(5)
    assert cache.get(stream_key) is None
    stats = cache.stats()
    assert stats["hits"] == 2 and stats["expirations"] == 1 and stats["entries"] == 1
    assert cache.erase(key) and cache.get(key) is None


def test_cache_memory_stays_within_its_budget():
    cache = sluice.ResponseCache(max_bytes=128 << 10, shards=2)
    for i in range(2000):
        cache.put(sluice.cache_key(body(seed=i)), b"x" * (i % 3000))
        assert cache.stats()["bytes"] <= 128 << 10
    with pytest.raises(sluice.InvalidArgument, match="shards"):
        sluice.ResponseCache(shards=3)


def test_100_concurrent_identical_misses_make_one_upstream_call_threads():
    import threading

    from mock_openai import MockOpenAI, chat

    cache = sluice.ResponseCache(max_bytes=1 << 20)
    key = sluice.cache_key(body(), "tenant")
    with MockOpenAI() as server:
        server.script("up", latency=0.2)  # slow enough for everyone to arrive while it runs
        answers = []
        barrier = threading.Barrier(100)

        def one():
            barrier.wait()
            answers.append(cache.get_or_fetch(key, lambda: json.dumps(
                chat(server.port, "up", timeout=10)).encode()))

        threads = [threading.Thread(target=one) for _ in range(100)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
        assert server.calls() == {"up": 1}
    assert len(answers) == 100 and len(set(answers)) == 1
    stats = cache.stats()
    assert stats["merged_waits"] + stats["hits"] == 99


def test_streamed_answers_are_shared_chunk_for_chunk_and_a_failed_leader_hands_over():
    cache = sluice.ResponseCache(max_bytes=1 << 20)
    key = sluice.cache_key(body(stream=True))
    chunks = [b'data: {"choices":[{"delta":{"content":"Hi"}}]}\n\n', b"data: [DONE]\n\n"]
    assert cache.get_or_fetch(key, lambda: chunks) == chunks
    assert cache.get(key) == chunks  # replayed as the same SSE chunks, byte for byte

    other = sluice.cache_key(body(n=3))
    first = cache._fetch(other)
    second = cache._fetch(other)
    assert first.is_lead and not second.is_lead and not second.ready()
    first.abandon()  # the leader's upstream call failed
    assert second.ready()
    assert second._result().is_lead


def test_cooperative_waits_under_gevent_and_asyncio():
    pytest.importorskip("gevent")
    import asyncio

    import gevent

    from loop_gaps import await_beside_ticker, run_greenlets_beside_ticker

    cache = sluice.ResponseCache(max_bytes=1 << 20)
    key = sluice.cache_key(body(seed=1))
    calls = []

    def upstream():
        calls.append(1)
        gevent.sleep(0.1)
        return b"answer"

    results = []
    gaps = run_greenlets_beside_ticker(
        [lambda: results.append(cache.get_or_fetch(key, upstream))] * 100)
    assert calls == [1] and results == [b"answer"] * 100
    assert cache.stats()["merged_waits"] == 99
    assert max(gaps) < 0.04  # the followers waited on their eventfds, not in the hub's thread

    akey = sluice.cache_key(body(seed=2))

    async def aupstream():
        calls.append(2)
        await asyncio.sleep(0.1)
        return b"async answer"

    async def main():
        return await asyncio.gather(*[cache.get_or_fetch_async(akey, aupstream) for _ in range(50)])

    answers, gaps = asyncio.run(await_beside_ticker(main()))
    assert calls == [1, 2] and answers == [b"async answer"] * 50
    assert max(gaps) < 0.04


def test_per_request_controls_no_cache_no_store_ttl():
    clock = sluice.ManualClock()
    cache = sluice.ResponseCache(max_bytes=1 << 20, clock=clock)
    key = sluice.cache_key(body(seed=9))
    assert cache.get_or_fetch(key, lambda: b"v1", store=False) == b"v1"  # no-store
    assert cache.get(key) is None
    assert cache.get_or_fetch(key, lambda: b"v1", ttl=10) == b"v1"
    assert cache.get_or_fetch(key, lambda: b"never called") == b"v1"
    assert cache.get_or_fetch(key, lambda: b"v2", no_cache=True) == b"v2"  # no-cache: refresh
    assert cache.get(key) == b"v2"
    clock.advance(3600)  # past the default TTL of the refreshed entry
    assert cache.get(key) is None


def test_answers_calling_tools_can_be_kept_out():
    cache = sluice.ResponseCache(max_bytes=1 << 20, store_tool_calls=False)
    tool_call = b'{"choices":[{"message":{"tool_calls":[]},"finish_reason":"tool_calls"}]}'
    assert not cache.put(sluice.cache_key(body(seed=1)), tool_call)
    assert cache.put(sluice.cache_key(body(seed=2)), b'{"choices":[]}')
    assert cache.stats()["skipped_tool_calls"] == 1


def test_a_stored_answer_serves_the_other_form():
    cache = sluice.ResponseCache(max_bytes=1 << 20)
    whole = sluice.cache_key(body(seed=21))
    completion = (b'{"id":"c1","object":"chat.completion","model":"m","choices":[{"index":0,'
                  b'"message":{"role":"assistant","content":"Hi there"},"finish_reason":"stop"}]}')
    cache.put(whole, completion)
    events = cache.get_as(whole, stream=True)
    assert events[-1] == b"data: [DONE]\n\n"
    assert b'"content":"Hi there"' in events[0]
    streamed = sluice.cache_key(body(seed=22))
    cache.put(streamed, events)
    assert cache.get_as(streamed, stream=True) == events  # the same chunks, byte for byte
    assert json.loads(cache.get_as(streamed, stream=False))["choices"][0]["message"]["content"] \
        == "Hi there"
    tools = sluice.cache_key(body(seed=23))
    cache.put(tools, b'{"choices":[{"message":{"tool_calls":[]}}]}')
    assert cache.get_as(tools, stream=True) is None  # not converted
