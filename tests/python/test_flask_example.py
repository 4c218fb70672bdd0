"""The Dify-shaped Flask example works end to end through Flask's test client."""

import pathlib
import sys

import pytest

flask = pytest.importorskip("flask")
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2]))

import sluice  # noqa: E402
from examples.flask_app.app import create_app  # noqa: E402


@pytest.fixture
def client_and_clock():
    clock = sluice.ManualClock()
    app = create_app(clock=clock)
    return app.test_client(), clock, app


def test_burst_then_429_with_headers(client_and_clock):
    client, clock, _ = client_and_clock
    body = {"tenant": "t1", "app": "a1", "query": "hello there"}
    codes = [client.post("/v1/chat-messages", json=body).status_code for _ in range(12)]
    assert codes == [200] * 10 + [429] * 2
    refused = client.post("/v1/chat-messages", json=body)
    assert refused.status_code == 429
    assert refused.headers["Retry-After"] == "1"
    assert refused.headers["RateLimit-Policy"] == '"sluice";q=5;w=1'
    assert refused.get_json()["retry_after"] == pytest.approx(0.2)
    clock.advance(0.2)
    assert client.post("/v1/chat-messages", json=body).status_code == 200


def test_stream_holds_its_slot_until_the_stream_ends(client_and_clock):
    client, _, app = client_and_clock
    streams = app.extensions["sluice"]["streams"]
    body = {"tenant": "t2", "app": "a2", "query": "one two three", "stream": True}
    first = client.post("/v1/chat-messages", json=body, buffered=False)
    second = client.post("/v1/chat-messages", json=body, buffered=False)
    chunks = first.response  # the generator: not consumed yet
    next(iter(chunks))
    assert streams.in_flight("a2") == 2
    third = client.post("/v1/chat-messages", json=body)
    assert third.status_code == 429  # both slots held by live streams
    b"".join(first.response)
    first.close()
    second.close()
    assert streams.in_flight("a2") == 0
    tokens = app.extensions["sluice"]["tokens"]
    assert tokens.peek("t2").remaining < 20_000  # usage was settled, not the estimate
