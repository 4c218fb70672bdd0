"""Usage metering from Python: UsageReader over streams cut anywhere, read_usage, the
include-usage helper and the prompt-token estimate (sluice/usage.h underneath)."""

import json
import random

import pytest

import sluice

OPENAI_STREAM = b"".join(
    b"data: " + json.dumps(event).encode() + b"\n\n"
    for event in [
        {"id": "c1", "object": "chat.completion.chunk",
         "choices": [{"index": 0, "delta": {"content": "你好 👋"}}], "usage": None},
        {"id": "c1", "object": "chat.completion.chunk", "choices": [],
         "usage": {"prompt_tokens": 1919, "completion_tokens": 10, "total_tokens": 1929,
                   "prompt_tokens_details": {"cached_tokens": 1792}}},
    ]) + b"data: [DONE]\n\n"

ANTHROPIC_STREAM = (
    b"event: message_start\r\ndata: {\"type\":\"message_start\",\"message\":{\"usage\":"
    b"{\"input_tokens\":25,\"cache_read_input_tokens\":100,\"output_tokens\":1}}}\r\n\r\n"
    b"event: message_delta\r\ndata: {\"type\":\"message_delta\",\"usage\":{\"output_tokens\":15}}"
    b"\r\n\r\n")


def feed_in_pieces(data: bytes, provider: str, rng: random.Random) -> "sluice.Usage":
    reader = sluice.UsageReader(provider)
    i = 0
    while i < len(data):
        step = rng.randint(1, 17)
        reader.feed(data[i:i + step])
        i += step
    return reader.finish()


@pytest.mark.parametrize("seed", range(20))
def test_any_chunking_gives_the_same_usage(seed):
    rng = random.Random(seed)
    whole = sluice.read_usage(OPENAI_STREAM)
    assert whole.prompt_tokens == 1919 and whole.completion_tokens == 10
    assert whole.cached_tokens == 1792 and whole.provider == "openai_chat"
    assert "cached_tokens" in whole.reported and "reasoning_tokens" not in whole.reported
    def counts(u):
        return (u.prompt_tokens, u.completion_tokens, u.total_tokens, u.cached_tokens,
                u.cache_creation_tokens, u.reasoning_tokens, u.reported, u.provider)

    assert counts(feed_in_pieces(OPENAI_STREAM, "auto", rng)) == counts(whole)
    anthropic = feed_in_pieces(ANTHROPIC_STREAM, "anthropic", rng)
    assert (anthropic.prompt_tokens, anthropic.completion_tokens) == (125, 15)
    assert anthropic.cached_tokens == 100


def test_no_usage_is_none_and_the_reader_is_finished_after_finish():
    reader = sluice.UsageReader("openai_chat")
    reader.feed(b"data: {\"choices\":[{\"delta\":{\"content\":\"x\"}}]}\n\n")
    assert reader.finish() is None  # no include_usage: None, never zeros
    assert reader.finish() is None
    with pytest.raises(sluice.FailedPrecondition):
        reader.feed(b"data: {}\n\n")
    assert reader.stats["events"] == 1
    assert sluice.read_usage(b"{}") is None


def test_include_usage_in_stream_asks_for_the_usage_chunk():
    body = json.loads(sluice.include_usage_in_stream(b'{"model":"m","messages":[],"stream":true}'))
    assert body["stream_options"] == {"include_usage": True}
    unchanged = b'{"model":"m"}'
    assert sluice.include_usage_in_stream(unchanged) == unchanged
    with pytest.raises(sluice.InvalidArgument):
        sluice.include_usage_in_stream(b"not json")


def test_the_estimate_grows_with_the_prompt_and_checks_its_options():
    small = sluice.estimate_prompt_tokens(
        b'{"messages":[{"role":"user","content":"hello"}]}')
    large = sluice.estimate_prompt_tokens(
        json.dumps({"messages": [{"role": "user", "content": "hello " * 1000}]}).encode())
    assert 0 < small < large
    assert sluice.estimate_text_tokens("hello world " * 100, scale=2.0) > \
        sluice.estimate_text_tokens("hello world " * 100)
    for field, value in [("scale", float("nan")), ("scale", -1.0),
                         ("cjk_chars_per_token", 0.0), ("cjk_chars_per_token", float("inf")),
                         ("tokens_per_message", -1)]:
        with pytest.raises(sluice.InvalidArgument, match=field):
            sluice.estimate_prompt_tokens(b"{}", **{field: value})


def test_hostile_readers():
    with pytest.raises(sluice.InvalidArgument, match="provider"):
        sluice.UsageReader("openai")
    with pytest.raises(sluice.InvalidArgument, match="max_event_bytes"):
        sluice.UsageReader(max_event_bytes=0)
    with pytest.raises(TypeError):
        sluice.UsageReader().feed("text, not bytes")
    reader = sluice.UsageReader(max_event_bytes=64)
    reader.feed(b"data: " + b"x" * 10_000 + b"\n\n")  # dropped as it grows, counted
    assert reader.finish() is None and reader.stats["oversized_events"] == 1
