"""The asyncio fast path (issue 19) beside aiolimiter, interleaved in one run.

    python benchmarks/python/bench_async_fast_path.py [--quick] [--json]

Every case is admitted at once (limits so large that nothing waits, a cache hit), process scope,
one hot key, inside one running coroutine: the figure is what one ``await`` of the call costs,
loop overhead included. The cases run in rounds, one batch of each per round in a rotating
order, so that a busy machine slows them alike; each figure is the median of the batch means.

Cases: ``await RateLimiter.acquire_async`` / ``await TokenBudget.reserve_async`` /
``await ResponseCache.get_or_fetch_async`` (a hit) / ``await ConcurrencyLimiter.acquire_async``
(+ release), each beside its synchronous twin called in the same coroutine (``try_acquire``,
``try_reserve``, ``get_or_fetch``, ``try_acquire`` + release: what the decision itself costs), and
aiolimiter's ``await AsyncLimiter.acquire()`` (capacity so large it never waits; aiolimiter is
in requirements-bench.txt). Columns: the ratio to aiolimiter, and what the ``await`` adds to the
synchronous twin (the coroutine); the goal is 0.3 us per admitted ``await``.
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

    # The synchronous twins, called in the same coroutine: what the decision itself costs.
    async def try_acquire(n):
        decide = limiter.try_acquire
        for _ in range(n):
            decide("tenant-1")

    async def try_reserve(n):
        reserve = budget.try_reserve
        for _ in range(n):
            reserve("tenant-1", 10)

    def never_called_sync():
        raise AssertionError("the cache case must hit")

    async def get_or_fetch(n):
        get_or_fetch = cache.get_or_fetch
        for _ in range(n):
            get_or_fetch(key, never_called_sync)

    async def permit(n):
        acquire = cap.try_acquire
        for _ in range(n):
            acquire("app").release()

    cases = {
        "await RateLimiter.acquire_async": acquire_async,
        "  RateLimiter.try_acquire (sync, same coroutine)": try_acquire,
        "await TokenBudget.reserve_async": reserve_async,
        "  TokenBudget.try_reserve (sync)": try_reserve,
        "await ResponseCache.get_or_fetch_async (hit)": get_or_fetch_async,
        "  ResponseCache.get_or_fetch (sync, hit)": get_or_fetch,
        "await ConcurrencyLimiter.acquire_async + release": permit_async,
        "  ConcurrencyLimiter.try_acquire + release (sync)": permit,
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
    print(f"{'case (admitted at once)':50} {'us/call':>8} {'x aiolimiter':>13} "
          f"{'async over sync':>16}  goal {GOAL_US} us")
    names = list(results)
    for i, (name, us) in enumerate(results.items()):
        ratio = f"{us / peer:13.2f}" if peer else f"{'-':>13}"
        twin = names[i + 1] if name.startswith("await") else None
        overhead = f"{us - results[twin]:+16.3f}" if twin else f"{'':16}"
        verdict = ("met" if us <= GOAL_US else "missed") if name.startswith("await") else ""
        print(f"{name:50} {us:8.3f} {ratio} {overhead}  {verdict}")


if __name__ == "__main__":
    main()
