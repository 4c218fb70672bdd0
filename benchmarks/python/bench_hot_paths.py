"""sluice's own per-call cost from Python on its hot paths, for comparing two builds of sluice.

    python benchmarks/python/bench_hot_paths.py [--json]

Process scope, one hot key, median of 7 batches (nanoseconds per call, loop overhead included).
It runs against the current API and the one before issue 14 alike: the bool fast path is
`allow` where it exists (`try_acquire` before), the full decision `try_acquire` (`decide` before),
so scripts/compare-builds.sh can run it against both builds back to back.
"""

from __future__ import annotations

import json
import statistics
import sys
import time
import warnings

import sluice

warnings.simplefilter("ignore", DeprecationWarning)

HUGE = 10**9


def per_call_ns(fn, number: int, batches: int = 7) -> float:
    means = []
    for _ in range(batches):
        start = time.perf_counter_ns()
        for _ in range(number):
            fn()
        means.append((time.perf_counter_ns() - start) / number)
    return statistics.median(means)


def full_decision(limiter):
    """The call that returns a Decision without waiting."""
    decision = limiter.try_acquire("tenant-1")
    if isinstance(decision, bool):  # before issue 14: try_acquire was the bool fast path
        return limiter.decide
    return limiter.try_acquire


def main() -> None:
    rl = sluice.RateLimiter([sluice.Window.per_minute(HUGE)])
    fast = rl.allow if hasattr(rl, "allow") else rl.try_acquire
    decide = full_decision(rl)
    bucket = sluice.LeakyBucket(HUGE, per=60.0)
    cap = sluice.ConcurrencyLimiter(HUGE)
    budget = sluice.TokenBudget([sluice.Window.per_minute(HUGE)])
    reserve = budget.try_reserve
    balancer = sluice.Balancer("round_robin", seed=1)
    for i in range(16):
        balancer.add_endpoint(f"e{i}")
    cache = sluice.ResponseCache(max_bytes=64 << 20)
    key = sluice.cache_key(b'{"model":"m","messages":[{"role":"user","content":"hi"}]}')
    cache.put(key, b'{"choices":[]}')

    def permit():
        cap.try_acquire("app").release()

    def reservation():
        reserve("tenant-1", 10).settle(8)

    rows = {
        "RateLimiter fast path (allow)": per_call_ns(lambda: fast("tenant-1"), 200_000),
        "RateLimiter full Decision": per_call_ns(lambda: decide("tenant-1"), 200_000),
        "LeakyBucket try_acquire": per_call_ns(lambda: bucket.try_acquire("tenant-1"), 200_000),
        "ConcurrencyLimiter try_acquire + release": per_call_ns(permit, 100_000),
        "TokenBudget try_reserve + settle": per_call_ns(reservation, 100_000),
        "Balancer pick + complete (16 endpoints)": per_call_ns(
            lambda: balancer.pick().complete(status=200), 50_000),
        "ResponseCache get (hit)": per_call_ns(lambda: cache.get(key), 100_000),
    }
    if "--json" in sys.argv:
        print(json.dumps(rows))
        return
    for name, ns in rows.items():
        print(f"{name:45s} {ns:8.0f} ns")


if __name__ == "__main__":
    main()
