"""ResponseCache from Python: live stream tailing (threads against the mock server, gevent,
asyncio) and the Redis tier against a redis-server the test starts, killed mid-run."""

import json
import threading
import time

import pytest

import sluice


def body(**fields):
    request = {"model": "gpt-4o", "stream": True,
               "messages": [{"role": "user", "content": "Hi"}], **fields}
    return json.dumps(request).encode()


def wait_until(condition, timeout=20.0):
    """Polls `condition` (an event in another thread, not a clock window) until true."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.002)


def test_100_concurrent_identical_streamed_misses_make_one_upstream_call_tailed_live():
    from mock_openai import MockOpenAI, chat

    cache = sluice.ResponseCache(max_bytes=1 << 20)
    key = sluice.cache_key(body(), "tenant")
    gate = threading.Event()
    received = [[] for _ in range(100)]

    def upstream(port):
        for i, data in enumerate(chat(port, "up", stream=True, timeout=10)):
            yield b"data: " + data + b"\n\n"
            if i == 0:
                gate.wait(30)  # the rest of the stream waits until every caller has chunk 0
        yield b"data: [DONE]\n\n"

    with MockOpenAI() as server:
        barrier = threading.Barrier(100)

        def one(i):
            barrier.wait()
            for chunk in cache.stream_or_fetch(key, lambda: upstream(server.port)):
                received[i].append(chunk)

        threads = [threading.Thread(target=one, args=(i,)) for i in range(100)]
        for t in threads:
            t.start()
        # Live: every caller holds the first chunk while the leader's stream is still open.
        wait_until(lambda: all(len(r) >= 1 for r in received))
        assert all(len(r) == 1 for r in received)
        gate.set()
        for t in threads:
            t.join(timeout=60)
        assert server.calls() == {"up": 1}
    assert len(received[0]) == 6  # 5 content chunks and [DONE]
    assert all(r == received[0] for r in received)
    stats = cache.stats()
    assert stats["merged_waits"] + stats["hits"] == 99
    assert cache.get(key) == received[0]  # stored as the same chunks


def test_a_leader_stream_that_breaks_breaks_only_the_callers_that_relayed_part_of_it():
    cache = sluice.ResponseCache(max_bytes=1 << 20)
    key = sluice.cache_key(body(n=1))
    gate = threading.Event()
    outcomes = {}
    got_first = []

    def failing_upstream():
        yield b"data: partial\n\n"
        gate.wait(30)
        raise ConnectionResetError("upstream cut the stream")

    def leader():
        try:
            list(cache.stream_or_fetch(key, failing_upstream))
        except ConnectionResetError as e:
            outcomes["leader"] = e

    def follower(name):
        try:
            for chunk in cache.stream_or_fetch(key, lambda: iter([b"data: never\n\n"])):
                got_first.append(chunk)
        except sluice.StreamBroken as e:
            outcomes[name] = e

    lead = threading.Thread(target=leader)
    lead.start()
    wait_until(lambda: cache.stats()["misses"] >= 1)
    followers = [threading.Thread(target=follower, args=(f"f{i}",)) for i in range(2)]
    for t in followers:
        t.start()
    wait_until(lambda: len(got_first) == 2)
    gate.set()
    for t in [lead, *followers]:
        t.join(timeout=30)
    assert isinstance(outcomes["leader"], ConnectionResetError)
    assert isinstance(outcomes["f0"], sluice.StreamBroken)
    assert isinstance(outcomes["f1"], sluice.StreamBroken)
    assert cache.get(key) is None  # a broken stream is never stored
    # The next caller leads a fresh stream.
    assert list(cache.stream_or_fetch(key, lambda: iter([b"data: ok\n\n"]))) == [b"data: ok\n\n"]


def test_stream_tailing_is_cooperative_under_gevent_and_asyncio():
    pytest.importorskip("gevent")
    import asyncio

    import gevent

    from loop_gaps import await_beside_ticker, run_greenlets_beside_ticker

    cache = sluice.ResponseCache(max_bytes=1 << 20)
    chunks = [b"data: %d\n\n" % i for i in range(5)] + [b"data: [DONE]\n\n"]
    calls = []

    def upstream():
        calls.append(1)
        for chunk in chunks:
            gevent.sleep(0.02)
            yield chunk

    key = sluice.cache_key(body(seed=1))
    results = []
    gaps = run_greenlets_beside_ticker(
        [lambda: results.append(list(cache.stream_or_fetch(key, upstream)))] * 100)
    assert calls == [1] and results == [chunks] * 100
    assert max(gaps) < 0.04  # followers waited on their eventfds, chunk by chunk

    akey = sluice.cache_key(body(seed=2))

    async def aupstream():
        calls.append(2)
        for chunk in chunks:
            await asyncio.sleep(0.02)
            yield chunk

    async def consume():
        return [c async for c in cache.stream_or_fetch_async(akey, aupstream)]

    async def main():
        return await asyncio.gather(*[consume() for _ in range(50)])

    answers, gaps = asyncio.run(await_beside_ticker(main()))
    assert calls == [1, 2] and answers == [chunks] * 50
    assert max(gaps) < 0.04


def test_a_stored_whole_answer_streams_as_sse_chunks():
    cache = sluice.ResponseCache(max_bytes=1 << 20)
    key = sluice.cache_key(body(seed=3))
    completion = json.dumps({"id": "c1", "object": "chat.completion", "created": 1, "model": "m",
                             "choices": [{"index": 0, "finish_reason": "stop",
                                          "message": {"role": "assistant", "content": "Hi"}}]})
    cache.put(key, completion.encode())
    replay = list(cache.stream_or_fetch(key, lambda: pytest.fail("must not call upstream")))
    assert replay == sluice.completion_to_sse(completion.encode())
    assert replay[-1] == b"data: [DONE]\n\n"
    replayed = json.loads(sluice.sse_to_completion(replay))
    assert replayed["choices"][0]["message"]["content"] == "Hi"


def _tiered(port, **options):
    # Generous: a timed-out read is a miss, which would hide what a test checks.
    store = sluice.RedisStore(port=port, command_timeout=2.0, reconnect_interval=0.05)
    options.setdefault("max_bytes", 1 << 20)
    return sluice.ResponseCache(redis=store, redis_name="pytest", **options)


def test_redis_tier_shares_answers_between_caches_and_fills_the_process_tier(redis_server):
    writer = _tiered(redis_server.port)
    reader = _tiered(redis_server.port)
    key = sluice.cache_key(body(seed=4), "tenant")
    assert writer.put(key, b"shared answer", ttl=60)
    wait_until(lambda: writer.stats()["redis_writes"] == 1)
    assert reader.get(key) is None  # get stays in process
    assert reader.get_or_fetch(key, lambda: pytest.fail("Redis had it")) == b"shared answer"
    assert reader.get(key) == b"shared answer"  # filled
    assert reader.stats()["redis_hits"] == 1

    streamed = sluice.cache_key(body(seed=5))
    chunks = [b"data: a\n\n", b"data: [DONE]\n\n"]
    assert list(writer.stream_or_fetch(streamed, lambda: iter(chunks))) == chunks
    wait_until(lambda: writer.stats()["redis_writes"] == 2)
    assert list(reader.stream_or_fetch(streamed, lambda: pytest.fail("Redis had it"))) == chunks

    with pytest.raises(sluice.InvalidArgument, match="redis_name"):
        sluice.ResponseCache(redis=sluice.RedisStore(port=redis_server.port), redis_name="a b")


def test_redis_killed_mid_run_nothing_fails_and_the_process_tier_keeps_serving(redis_server):
    pytest.importorskip("gevent")
    from loop_gaps import run_greenlets_beside_ticker

    cache = _tiered(redis_server.port)
    keys = [sluice.cache_key(body(seed=100 + i)) for i in range(60)]
    for k in keys[:20]:
        cache.put(k, b"early")
    wait_until(lambda: cache.stats()["redis_writes"] == 20)
    upstream_calls = []

    def upstream():
        upstream_calls.append(1)
        return b"fresh"

    answers = []

    def worker(i):
        def run():
            if i == 50:
                redis_server.kill()
            # 20 keys stored early, 20 new before the kill, 20 new after it (asked of a dead Redis).
            answers.append(cache.get_or_fetch(keys[i % 40] if i < 100 else keys[40 + i % 20],
                                              upstream))
        return run

    gaps = run_greenlets_beside_ticker([worker(i) for i in range(200)])
    assert len(answers) == 200  # every call ended with an answer: nothing failed
    assert set(answers) <= {b"early", b"fresh"}
    assert len(upstream_calls) == 40  # each new key once; the rest were process-tier hits
    assert cache.stats()["redis_errors"] >= 1
    assert max(gaps) < 0.2  # Redis's failure was waited for on an eventfd, not in the hub


def test_a_hit_hands_back_the_stored_bytes_object_itself():
    import sys

    cache = sluice.ResponseCache(max_bytes=1 << 20)
    key = sluice.cache_key(body(seed=6))
    answer = b"y" * 2048
    before = sys.getrefcount(answer)
    cache.put(key, answer)
    assert sys.getrefcount(answer) == before + 1  # the cache holds the object, not a copy
    assert cache.get(key) is answer
    assert cache.erase(key)
    assert sys.getrefcount(answer) == before


def test_an_answer_evicted_off_the_gil_is_released_under_it(redis_server):
    import sys

    writer = _tiered(redis_server.port)
    small = _tiered(redis_server.port, max_bytes=64 << 10, shards=1, admission=False)
    kept = b"k" * 20_000
    before = sys.getrefcount(kept)
    small.put(sluice.cache_key(body(seed=7)), kept)
    assert sys.getrefcount(kept) == before + 1
    keys = [sluice.cache_key(body(seed=200 + i)) for i in range(8)]
    for k in keys:
        writer.put(k, b"w" * 20_000)
    wait_until(lambda: writer.stats()["redis_writes"] == 8)
    # Redis hits are stored by the store's connection thread, which holds no GIL: the evicted
    # Python answer is queued and released by the interpreter, not leaked, not freed unsafely.
    for k in keys:
        assert small.get_or_fetch(k, lambda: pytest.fail("Redis had it")) == b"w" * 20_000
    assert small.stats()["evictions"] >= 1
    wait_until(lambda: sys.getrefcount(kept) == before)


def test_a_whole_caller_of_a_streaming_leader_gets_the_chunks_once_it_ends():
    cache = sluice.ResponseCache(max_bytes=1 << 20)
    key = sluice.cache_key(body(seed=8))
    gate = threading.Event()
    chunks = [b"data: 1\n\n", b"data: [DONE]\n\n"]

    def upstream():
        yield chunks[0]
        gate.wait(30)
        yield chunks[1]

    relayed = []
    leader = threading.Thread(target=lambda: relayed.extend(cache.stream_or_fetch(key, upstream)))
    leader.start()
    wait_until(lambda: cache.stats()["misses"] == 1)
    whole = []
    follower = threading.Thread(
        target=lambda: whole.append(cache.get_or_fetch(key, lambda: pytest.fail("merged"))))
    follower.start()
    wait_until(lambda: cache.stats()["merged_waits"] == 1)
    gate.set()
    for t in (leader, follower):
        t.join(timeout=30)
    assert relayed == chunks and whole == [chunks]


def test_a_stored_tool_call_answer_is_streamed_afresh_and_kept():
    cache = sluice.ResponseCache(max_bytes=1 << 20)
    key = sluice.cache_key(body(seed=9))
    tool_answer = json.dumps({"choices": [{"message": {"tool_calls": [{"id": "c1"}]},
                                           "finish_reason": "tool_calls"}]}).encode()
    cache.put(key, tool_answer)
    fresh = [b"data: fresh\n\n"]
    assert list(cache.stream_or_fetch(key, lambda: iter(fresh))) == fresh
    assert cache.get(key) == tool_answer  # not replaced by the uncached stream
