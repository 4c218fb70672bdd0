"""FallbackPolicy from Python, side by side with its peers, in one run.

    python benchmarks/python/bench_fallback.py

1. Overhead per call (one successful attempt, no I/O), median of 5:
   sluice's ``policy.call(fn)`` and its raw ``begin()`` + ``next(200)``, beside pybreaker's
   ``CircuitBreaker.call``, tenacity's ``Retrying`` (3 attempts), and a LiteLLM-style router
   step (per-minute failure counters and a cooldown check in Python dicts, as LiteLLM's
   ``cooldown_handlers.py`` keeps them).

2. Upstream-call amplification against the mock OpenAI server (benchmarks/python/mock_openai.py),
   16 threads x 100 requests, each upstream call taking 5 ms, a chain primary -> backup:
     naive     retry the primary three times, then the backup once;
     litellm   LiteLLM Router semantics from its docs and code: num_retries=2 on the primary
               unless it is cooling down, then the backup. A deployment cools down for 5 s when
               its failed share this minute exceeds 50 % (never on the minute's first request)
               -- but not when it is alone in its model group unless `allowed_fails` is set
               (PR #8668; issue #40405): "litellm" is that default, "litellm+allowed_fails"
               cools single deployments down too;
     sluice    FallbackPolicy with its defaults (one same-target retry within a 20 % retry
               budget, breaker: 5 in a row or 50 % of >= 10 calls in 10 s, open 5 s and growing).
   At a 50 % primary error rate, and with the primary down (100 %). Reported: upstream calls
   per request (all, and to the primary), success rate, and request latency p50 / p99.

3. The retry budget alone: one target and no backup, every call failing, up to three retries
   per request: naive retrying against sluice with its breaker switched off (only the budget
   holds retries back) and with its defaults.
"""

from __future__ import annotations

import os
import sys
import threading
import time

import pybreaker
import tenacity

import sluice

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from mock_openai import MockOpenAI, chat  # noqa: E402
from timing import per_call  # noqa: E402




class LiteLLMStyleRouter:
    """The cooldown rules of LiteLLM's Router (``router_utils/cooldown_handlers.py``), re-written
    from their description: per deployment and minute, count calls and failures; cool it down
    for ``cooldown_time`` when failures / calls > 50 % (not on the minute's first call)."""

    def __init__(self, deployments, num_retries=2, cooldown_time=5.0, single_deployment_cooldown=False):
        self.deployments = deployments
        # Each deployment here is alone in its model group (the chain's fallbacks are groups).
        self.cooldown_enabled = single_deployment_cooldown
        self.num_retries = num_retries
        self.cooldown_time = cooldown_time
        self.lock = threading.Lock()
        self.counts = {}  # (deployment, minute) -> [calls, failures]
        self.cooldown_until = {}

    def _record(self, deployment, failed):
        minute = int(time.time() // 60)
        with self.lock:
            c = self.counts.setdefault((deployment, minute), [0, 0])
            c[0] += 1
            c[1] += failed
            if self.cooldown_enabled and failed and c[0] > 1 and c[1] / c[0] > 0.5:
                self.cooldown_until[deployment] = time.monotonic() + self.cooldown_time

    def _cooling(self, deployment):
        with self.lock:
            return self.cooldown_until.get(deployment, 0.0) > time.monotonic()

    def call(self, fn):
        last = None
        for deployment in self.deployments:  # the group, then its fallbacks
            for _ in range(self.num_retries + 1):
                if self._cooling(deployment):
                    break
                try:
                    result = fn(deployment)
                except (sluice.AttemptFailed, OSError) as e:
                    self._record(deployment, 1)
                    last = e
                    continue
                self._record(deployment, 0)
                return result
        raise last or RuntimeError("every deployment is cooling down")


def naive_call(fn, deployments=("primary", "backup"), retries=3):
    last = None
    for deployment in deployments:
        for _ in range(retries + 1 if deployment == deployments[0] else 1):
            try:
                return fn(deployment)
            except (sluice.AttemptFailed, OSError) as e:
                last = e
    raise last


def overhead():
    print("Overhead per call from Python (one successful attempt, no I/O; median of 5)")
    policy = sluice.FallbackPolicy([{"name": "primary"}, {"name": "backup"}])
    ok = lambda attempt: None  # noqa: E731
    rows = [
        ("sluice FallbackPolicy.call(fn)", lambda: policy.call(ok)),
        ("sluice begin() + next(200)", lambda: policy.begin().next(200)),
    ]
    breaker = pybreaker.CircuitBreaker(fail_max=5, reset_timeout=5)
    rows.append(("pybreaker CircuitBreaker.call", lambda: breaker.call(lambda: None)))
    retrying = tenacity.Retrying(stop=tenacity.stop_after_attempt(3), reraise=True)
    rows.append(("tenacity Retrying (3 attempts)", lambda: retrying(lambda: None)))
    router = LiteLLMStyleRouter(["primary", "backup"], single_deployment_cooldown=True)
    rows.append(("LiteLLM-style router step", lambda: router.call(lambda d: None)))
    base = None
    for name, fn in rows:
        t = per_call(fn, number=50_000)
        base = base or t
        print(f"  {name:<34} {t * 1e6:7.2f} us   {t / base:5.1f}x sluice")


def run_load(server, strategy, threads=16, per_thread=100, targets=("primary", "backup")):
    latencies, failures = [], [0]
    lock = threading.Lock()
    policy_options = {}
    if strategy.startswith("sluice, "):  # the budget-only rows
        policy_options = {"max_retries_per_target": 3}
        if strategy.endswith("breaker off"):
            policy_options["breaker"] = {"consecutive_failures": 0, "failure_ratio": 0.0}
    policy = sluice.FallbackPolicy([{"name": t} for t in targets], **policy_options)
    router = LiteLLMStyleRouter(["primary", "backup"],
                                single_deployment_cooldown=strategy == "litellm+allowed_fails")

    def send(target):
        return chat(server.port, target, timeout=10)

    def one():
        if strategy.startswith("sluice"):
            return policy.call(lambda a: send(a.target))
        if strategy.startswith("litellm"):
            return router.call(send)
        return naive_call(send, deployments=targets)

    def worker():
        for _ in range(per_thread):
            start = time.monotonic()
            try:
                one()
            except (sluice.Error, OSError):
                with lock:
                    failures[0] += 1
            with lock:
                latencies.append(time.monotonic() - start)

    pool = [threading.Thread(target=worker) for _ in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    n = threads * per_thread
    calls = server.calls()
    latencies.sort()
    return {
        "calls": sum(calls.values()) / n,
        "primary": calls.get("primary", 0) / n,
        "success": 1 - failures[0] / n,
        "p50": latencies[n // 2] * 1e3,
        "p99": latencies[int(n * 0.99)] * 1e3,
    }


def amplification():
    print("\nUpstream calls per request, 16 threads x 100 requests, primary -> backup, "
          "5 ms per upstream call (mock OpenAI server)")
    print("  | primary error rate | strategy | calls / request | primary calls / request "
          "| success | p50 ms | p99 ms |")
    print("  |---|---|---:|---:|---:|---:|---:|")
    with MockOpenAI() as server:
        for rate in (0.0, 0.5, 1.0):
            for strategy in ("naive", "litellm", "litellm+allowed_fails", "sluice"):
                server.reset()
                server.script("primary", latency=0.005, error_rate=rate, seed=7)
                server.script("backup", latency=0.005)
                r = run_load(server, strategy)
                print(f"  | {rate:.0%} | {strategy} | {r['calls']:.2f} | {r['primary']:.2f} "
                      f"| {r['success']:.1%} | {r['p50']:.1f} | {r['p99']:.1f} |")
        print("\nThe retry budget alone: one target, no backup, every call failing, up to 3 retries")
        print("  | strategy | upstream calls / request | p50 ms | p99 ms |")
        print("  |---|---:|---:|---:|")
        for strategy in ("naive", "sluice, breaker off", "sluice, defaults + 3 retries"):
            server.reset()
            server.script("primary", latency=0.005, error_rate=1.0)
            r = run_load(server, strategy, targets=("primary",))
            print(f"  | {strategy} | {r['calls']:.2f} | {r['p50']:.1f} | {r['p99']:.1f} |")


if __name__ == "__main__":
    overhead()
    if "--overhead-only" not in sys.argv:
        amplification()
