"""Seeded workloads. A workload is a list of sessions; a session is a start time, its turns and
the think time before each next turn (sent that long after the previous turn's last token). A
one-off request is a session of one turn. Every message is a segment: an id and a length in
tokens; its text is 4 characters a token, the same for the same id, so the balancers hash real,
shared prefixes (`segment_text`)."""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

MODEL_NAME = "llama-3.1-8b"


@dataclass
class Turn:
    messages: List[Tuple[str, int, int]]   # (role, segment id, tokens)
    output_tokens: int
    answer_id: int


@dataclass
class Session:
    start: float
    turns: List[Turn]
    think: List[float]                     # before turn i+1
    worker: List[int] = field(default_factory=list)  # which worker process gets each turn


@dataclass
class Workload:
    name: str
    replicas: int
    sessions: List[Session]
    slowdowns: Optional[List[float]] = None
    workers: int = 1
    description: str = ""


class _Ids:
    def __init__(self, start: int = 1000):
        self.next = start

    def __call__(self) -> int:
        self.next += 1
        return self.next


_TEXT: Dict[int, str] = {}
_SYLLABLES = [a + b + c for a in "bcdfghklmnprstvz" for b in "aeiou" for c in "bdgklmnprstxz"]


def segment_text(seg_id: int, tokens: int) -> str:
    """`tokens` 4-character words ("kal " ...), determined by the segment id."""
    key = seg_id * 100003 + tokens
    text = _TEXT.get(key)
    if text is None:
        rng = random.Random(seg_id)
        text = " ".join(rng.choices(_SYLLABLES, k=tokens)) + " "
        _TEXT[key] = text
    return text


def clear_text_cache() -> None:
    _TEXT.clear()


def _poisson_times(rng: random.Random, rate: float, count: int, start: float = 0.0) -> List[float]:
    t, out = start, []
    for _ in range(count):
        t += rng.expovariate(rate)
        out.append(t)
    return out


def _bursty_times(rng: random.Random, rate: float, count: int, factor: float = 3.0,
                  period: float = 20.0, burst: float = 5.0) -> List[float]:
    """Poisson at `rate`, `factor` x `rate` for `burst` s of every `period` s (thinning)."""
    t, out, peak = 0.0, [], rate * factor
    while len(out) < count:
        t += rng.expovariate(peak)
        current = peak if (t % period) < burst else rate
        if rng.random() < current / peak:
            out.append(t)
    return out


def _zipf_picker(rng: random.Random, n: int, s: float = 1.0):
    weights = [1.0 / (k + 1) ** s for k in range(n)]
    order = list(range(n))
    rng.shuffle(order)  # which document is popular changes with the seed
    return lambda: order[rng.choices(range(n), weights=weights)[0]]


def rag(seed: int, requests: int = 1200, rate: float = 16.0, bursty: bool = False,
        replicas: int = 8, workers: int = 1) -> Workload:
    rng = random.Random(seed)
    ids = _Ids()
    docs = [10 + d for d in range(20)]
    pick_doc = _zipf_picker(rng, len(docs))
    times = (_bursty_times(rng, rate, requests) if bursty else _poisson_times(rng, rate, requests))
    sessions = []
    for t in times:
        turn = Turn([("system", docs[pick_doc()], 3000), ("user", ids(), 50)], 128, ids())
        sessions.append(Session(t, [turn], [], [rng.randrange(workers)]))
    name = "bursty RAG" if bursty else "RAG"
    desc = (f"{replicas} replicas, 20 shared 3,000-token documents (Zipf 1.0), 50-token questions, "
            f"128 out, {requests} requests, Poisson {rate:g}/s" + (" with 3x bursts 5 s of every 20 s" if bursty else ""))
    return Workload(name, replicas, sessions, workers=workers, description=desc)


def agentic(seed: int, sessions: int = 40, turns: int = 10, long_sessions: int = 4,
            long_turns: int = 50, replicas: int = 4, workers: int = 1, think: float = 2.0,
            spread: float = 20.0) -> Workload:
    """Each turn adds a 250-token user/tool message and a 150-token answer (+400 a turn); its
    prompt is the whole history after a 200-token system prompt (tools) that all share."""
    rng = random.Random(seed)
    ids = _Ids()
    system = 1
    out = []
    longs = set(rng.sample(range(sessions), long_sessions))
    for s in range(sessions):
        n = long_turns if s in longs else turns
        history: List[Tuple[str, int, int]] = [("system", system, 200)]
        ts = []
        for _ in range(n):
            history = history + [("user", ids(), 250)]
            answer = ids()
            ts.append(Turn(list(history), 150, answer))
            history = history + [("assistant", answer, 150)]
        out.append(Session(rng.uniform(0, spread), ts, [rng.expovariate(1 / think) for _ in range(n - 1)],
                           [rng.randrange(workers) for _ in range(n)]))
    desc = (f"{replicas} replicas, {sessions} sessions x {turns} turns ({long_sessions} of them {long_turns}), "
            f"200-token shared system prompt, +250 in / 150 out a turn, think {think:g} s")
    return Workload("agentic", replicas, out, workers=workers, description=desc)


def unshared(seed: int, requests: int = 800, rate: float = 6.0, replicas: int = 4) -> Workload:
    """One-off prompts that share nothing (no system prompt, no document, no history): 500 to
    6,000 tokens, log-uniform, 150 out. Where a cache-aware router can gain nothing, it should
    lose nothing against least request."""
    rng = random.Random(seed)
    ids = _Ids()
    out = []
    for t in _poisson_times(rng, rate, requests):
        tokens = int(round(math.exp(rng.uniform(math.log(500), math.log(6000)))))
        out.append(Session(t, [Turn([("user", ids(), tokens)], 150, ids())], [], [0]))
    desc = (f"{replicas} replicas, {requests} one-off prompts sharing nothing, 500-6,000 tokens "
            f"(log-uniform), 150 out, Poisson {rate:g}/s")
    return Workload("unshared", replicas, out, description=desc)


def heterogeneous(seed: int, chats: int = 80, chat_turns: int = 4, one_offs: int = 150,
                  one_off_rate: float = 2.5, chat_spread: float = 60.0) -> Workload:
    rng = random.Random(seed)
    ids = _Ids()
    system = 2
    out = []
    for _ in range(chats):
        history: List[Tuple[str, int, int]] = [("system", system, 300)]
        ts = []
        for _ in range(chat_turns):
            history = history + [("user", ids(), 100)]
            answer = ids()
            ts.append(Turn(list(history), 200, answer))
            history = history + [("assistant", answer, 200)]
        out.append(Session(rng.uniform(0, chat_spread), ts,
                           [rng.expovariate(1 / 5.0) for _ in range(chat_turns - 1)], [0] * chat_turns))
    for t in _poisson_times(rng, one_off_rate, one_offs):
        turn = Turn([("user", ids(), rng.randint(2000, 8000))], 100, ids())
        out.append(Session(t, [turn], [], [0]))
    desc = (f"4 replicas (r3 at half speed), {chats} chats x {chat_turns} turns (300-token shared system "
            f"prompt, 100 in / 200 out) + {one_offs} one-off 2-8k-token prompts (100 out), Poisson {one_off_rate:g}/s")
    return Workload("heterogeneous", 4, out, slowdowns=[1.0, 1.0, 1.0, 2.0], description=desc)
