"""The asyncio fast path (issue 19) beside aiolimiter, interleaved in one run.

    python benchmarks/python/bench_async_fast_path.py [--quick] [--json]

Every case is admitted at once (limits so large that nothing waits, a cache hit), process scope,
one hot key, inside one running coroutine: the figure is what one ``await`` of the call costs,
loop overhead included. The cases run in rounds, one batch of each per round in a rotating
order, so that a busy machine slows them alike; each figure is the median of the batch means.

Cases: ``await RateLimiter.acquire_async`` / ``await TokenBudget.reserve_async`` /
``await ResponseCache.get_or_fetch_async`` (a hit) / ``await ConcurrencyLimiter.acquire_async``
(+ release) / ``RateLimiter.try_acquire`` called in the coroutine (no await: the floor) /
aiolimiter's ``await AsyncLimiter.acquire()`` (capacity so large it never waits; aiolimiter is
in requirements-bench.txt). The ratio column divides by aiolimiter; the goal is 0.3 us.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time

import sluice

HUGE = 10**9
GOAL_US = 0.3


def make_cases():
    """name -> async function running `n` calls of the case."""
    limiter = sluice.RateLimiter([sluice.Window.per_minute(HUGE)])
    budget = sluice.TokenBudget([sluice.Window.per_minute(HUGE)])
    cap = sluice.ConcurrencyLimiter(HUGE)
    cache = sluice.ResponseCache(max_bytes=64 << 20)
    key = sluice.cache_key(b'{"model":"m","messages":[{"role":"user","content":"hi"}]}')
    cache.put(key, b'{"choices":[]}')

    async def never_called():
        raise AssertionError("the cache case must hit")

    async def acquire_async(n):
        acquire = limiter.acquire_async
        for _ in range(n):
            await acquire("tenant-1")

    async def reserve_async(n):
        reserve = budget.reserve_async
        for _ in range(n):
            await reserve("tenant-1", 10)

    async def get_or_fetch_async(n):
        get_or_fetch = cache.get_or_fetch_async
        for _ in range(n):
            await get_or_fetch(key, never_called)

    async def permit_async(n):
        acquire = cap.acquire_async
        for _ in range(n):
            (await acquire("app")).release()

    async def try_acquire(n):
        decide = limiter.try_acquire
        for _ in range(n):
            decide("tenant-1")

    cases = {
        "await RateLimiter.acquire_async": acquire_async,
        "await TokenBudget.reserve_async": reserve_async,
        "await ResponseCache.get_or_fetch_async (hit)": get_or_fetch_async,
        "await ConcurrencyLimiter.acquire_async + release": permit_async,
        "RateLimiter.try_acquire in a coroutine": try_acquire,
    }
    try:
        from aiolimiter import AsyncLimiter
    except ImportError:  # pip install -r requirements-bench.txt
        print("(aiolimiter is not installed: its row is missing)")
        return cases
    peer = AsyncLimiter(HUGE, 60)

    async def aiolimiter_acquire(n):
        acquire = peer.acquire
        for _ in range(n):
            await acquire()

    cases["aiolimiter await AsyncLimiter.acquire()"] = aiolimiter_acquire
    return cases


async def measure(cases, calls: int, rounds: int):
    """Median batch mean per case, in microseconds, the cases interleaved round by round."""
    means = {name: [] for name in cases}
    names = list(cases)
    for _ in range(2):  # warm up
        for name in names:
            await cases[name](calls // 10)
    for r in range(rounds):
        for name in names[r % len(names):] + names[:r % len(names)]:
            start = time.perf_counter_ns()
            await cases[name](calls)
            means[name].append((time.perf_counter_ns() - start) / calls / 1000)
    return {name: statistics.median(values) for name, values in means.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer calls")
    parser.add_argument("--json", action="store_true", help="print the medians as JSON")
    args = parser.parse_args()
    calls, rounds = (20_000, 7) if args.quick else (100_000, 15)
    results = asyncio.run(measure(make_cases(), calls, rounds))
    if args.json:
        print(json.dumps(results))
        return
    peer = results.get("aiolimiter await AsyncLimiter.acquire()")
    floor = results["RateLimiter.try_acquire in a coroutine"]
    print(f"{'case (admitted at once)':50} {'us/call':>8} {'x aiolimiter':>13} {'x try_acquire':>14}"
          f"  goal {GOAL_US} us")
    for name, us in results.items():
        ratio = f"{us / peer:13.2f}" if peer else f"{'-':>13}"
        verdict = "" if name.startswith(("aiolimiter", "RateLimiter.try")) else (
            "met" if us <= GOAL_US else "missed")
        print(f"{name:50} {us:8.3f} {ratio} {us / floor:14.2f}  {verdict}")


if __name__ == "__main__":
    main()
