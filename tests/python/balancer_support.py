"""Shared by the Balancer's Python tests: chat bodies whose conversations share no prefix, and a
bounded wait for what arrives asynchronously (a Redis read, a recovery); no window is waited."""

from __future__ import annotations

import json
import time


def chat_turns(conversation, turns: int) -> bytes:
    """A chat body: conversation `conversation`'s first `turns` exchanges (~1 kB each), then a
    question; the next turn's body extends this one."""
    messages = []
    for t in range(turns):
        messages.append({"role": "user", "content": f"conversation {conversation} asks {t} " * 40})
        messages.append({"role": "assistant", "content": f"reply {conversation}.{t} " * 40})
    messages.append({"role": "user", "content": "go on"})
    return json.dumps({"model": "m", "messages": messages}).encode()


def eventually(check, seconds: float = 10.0) -> bool:
    """Polls `check` until it is true, for at most `seconds`."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.01)
    return check()
