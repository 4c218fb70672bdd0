"""The event loop: a workload's turns through a router to the replicas, in simulated time.

Routers: the real `sluice.Balancer` (one per worker process, all on one `sluice.ManualClock`
set to the simulated time, every pick completed at its request's simulated finish), or the
SGLang-style peer (`peer.py`), one per worker, counting its own picks in flight.

Multi-worker: each turn goes to the worker the workload drew for it (uniformly, as a
Gunicorn worker takes whichever request comes). Shared state ("shared"): the sluice balancers
use one `shared_region`, which shares in-flight counts, the routes (each worker replays the
others' picks into its own prefix index and KV estimate, docs/balancer.md "Shared routes") and
cooldowns/ejections (unused here). The peer's workers share their in-flight counts (one list) and
keep their own trees. Not shared: every worker learns its own prefixes.
"""

from __future__ import annotations

import heapq
import json
import os
import itertools
from dataclasses import dataclass, field
from typing import List, Optional

import sluice

from .peer import SglangCacheAware, chunk_keys
from .replica import MODEL, CostModel, Replica, Sequence_
from .workloads import MODEL_NAME, Workload, segment_text

SLUICE_STRATEGIES = ("round_robin", "least_request", "prefix_affinity")
# SGLang's defaults (abs 32, rel 1.5) and thresholds scaled to fleets of 4-8 replicas.
PEERS = {"sglang": (32, 1.5), "sglang-small": (4, 1.5)}
STRATEGIES = SLUICE_STRATEGIES + tuple(PEERS)

_REGION_SEQ = itertools.count()


@dataclass
class Result:
    ttft: List[float] = field(default_factory=list)
    prompt_tokens: int = 0
    hit_tokens: int = 0
    preemptions: int = 0
    rejected: int = 0
    moved: int = 0             # turns sent to another replica than their session's previous turn
    follow_ups: int = 0        # turns after a session's first
    per_replica: List[int] = field(default_factory=list)
    sim_seconds: float = 0.0


def body_for(messages) -> str:
    return json.dumps({"model": MODEL_NAME, "messages": [
        {"role": role, "content": segment_text(seg, tokens)} for role, seg, tokens in messages]})


class _SluiceRouter:
    def __init__(self, strategy: str, replicas: int, kv_tokens: int, workers: int, shared: bool,
                 clock, extra: dict, seed: int):
        self.region = None
        options = {"clock": clock, "kv_capacity_blocks": kv_tokens * 4 // 128, **extra}
        if shared and workers > 1:
            self.region = f"sluice-fleet2-{os.getpid()}-{next(_REGION_SEQ)}"
            options["shared_region"] = self.region
        self.balancers = []
        for w in range(workers):
            b = sluice.Balancer(strategy, seed=seed + w, **options)
            for r in range(replicas):
                b.add_endpoint(f"r{r}")
            self.balancers.append(b)

    def pick(self, worker: int, body: str):
        p = self.balancers[worker].pick(body)
        return int(p.endpoint_id[1:]), p

    def complete(self, handle, status: int, ttft: float, latency: float) -> None:
        handle.complete(status=status, ttft=ttft, latency=latency)

    def close(self) -> None:
        self.balancers = []
        if self.region:
            # A Balancer's shared region is three: counts, cooldowns/ejections and (prefix
            # strategies only) routes.
            for name in (self.region, self.region + ".endpoints", self.region + ".routes"):
                try:
                    sluice.remove_shared_region(name)
                except sluice.NotFound:
                    pass


class _PeerRouter:
    def __init__(self, thresholds, replicas: int, workers: int, shared: bool):
        abs_t, rel_t = thresholds
        self.peers = [SglangCacheAware(replicas, abs_t, rel_t) for _ in range(workers)]
        if shared:
            one = [0] * replicas
            self.loads = [one] * workers
        else:
            self.loads = [[0] * replicas for _ in range(workers)]

    def pick(self, worker: int, body: str):
        r = self.peers[worker].pick(body, self.loads[worker], chunk_keys(body))
        self.loads[worker][r] += 1
        return r, (worker, r)

    def complete(self, handle, status: int, ttft: float, latency: float) -> None:
        worker, r = handle
        self.loads[worker][r] -= 1

    def close(self) -> None:
        pass


def simulate(workload: Workload, strategy: str, kv_tokens: int, shared: bool = False,
             model: CostModel = MODEL, balancer_options: Optional[dict] = None, seed: int = 1) -> Result:
    """`seed` seeds the balancers' random choices (worker w gets seed + w; sluice's 0 would
    draw one at random). `balancer_options`: extra sluice.Balancer options (diagnostics only; the report uses
    the defaults)."""
    clock = sluice.ManualClock()
    n = workload.replicas
    slowdowns = workload.slowdowns or [1.0] * n
    replicas = [Replica(kv_tokens, CostModel(**{**model.__dict__, "slowdown": s})) for s in slowdowns]
    if strategy in PEERS:
        router = _PeerRouter(PEERS[strategy], n, workload.workers, shared)
    else:
        router = _SluiceRouter(strategy, n, kv_tokens, workload.workers, shared, clock,
                               balancer_options or {}, seed)
    result = Result(per_replica=[0] * n)
    events: list = []
    seq_no = itertools.count()
    for s, session in enumerate(workload.sessions):
        heapq.heappush(events, (session.start, next(seq_no), 0, (s, 0)))
    rid = itertools.count()
    last_replica: dict = {}

    def start_step(r: int, now: float) -> None:
        duration = replicas[r].schedule(now)
        if duration is not None:
            heapq.heappush(events, (now + duration, next(seq_no), 1, r))

    def arrive(now: float, s: int, t: int) -> None:
        session = workload.sessions[s]
        turn = session.turns[t]
        clock.set(now)
        r, handle = router.pick(session.worker[t], body_for(turn.messages))
        result.per_replica[r] += 1
        if t > 0:
            result.follow_ups += 1
            result.moved += last_replica.get(s) != r
        last_replica[s] = r
        prompt = sum(tokens for _, _, tokens in turn.messages)
        replica = replicas[r]
        if not replica.fits(prompt + turn.output_tokens):
            result.rejected += 1   # vLLM's 400: longer than the KV cache; the session ends
            router.complete(handle, 400, 0.0, 0.0)
            return
        first = {}

        def on_first(at: float) -> None:
            first["at"] = at
            result.ttft.append(at - now)

        def on_finish(at: float) -> None:
            clock.set(at)
            router.complete(handle, 200, first["at"] - now, at - now)
            if t + 1 < len(session.turns):
                heapq.heappush(events, (at + session.think[t], next(seq_no), 0, (s, t + 1)))

        segments = [(seg, tokens) for _, seg, tokens in turn.messages] + [(turn.answer_id, turn.output_tokens)]
        replica.submit(Sequence_(next(rid), segments, prompt, turn.output_tokens, now, on_first, on_finish))
        if not replica.busy:
            start_step(r, now)

    now = 0.0
    while events:
        now, _, kind, payload = heapq.heappop(events)
        if kind == 0:
            arrive(now, *payload)
        else:
            replicas[payload].finish_step(now)
            start_step(payload, now)
    router.close()
    result.sim_seconds = now
    result.prompt_tokens = sum(r.prompt_tokens for r in replicas)
    result.hit_tokens = sum(r.hit_tokens for r in replicas)
    result.preemptions = sum(r.preemptions for r in replicas)
    return result
