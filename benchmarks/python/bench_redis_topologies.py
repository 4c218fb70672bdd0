"""Cluster scope on four Redis topologies: sluice beside redis-py running seed 004's ZSET Lua.

    python benchmarks/python/bench_redis_topologies.py [--quick]

Starts and stops its own servers (benchmarks/python/redis_topologies.py): (a) a standalone
redis-server, (b) a Redis Cluster of 3 masters, (c) a master found through 3 sentinels, (d) a
standalone server over TLS. On each, one process makes decisions for 1,000 tenants in turn (keys
hash-tagged, so on the Cluster every master serves some) at a limit that never binds, and reports
decisions per second and p50 / p99 microseconds per decision, the median of the rounds (rounds
interleave the rows). The peer is redis-py (redis.Redis, redis.cluster.RedisCluster,
Sentinel.master_for, redis.Redis(ssl=True)) evaluating the seed's sliding-window ZSET script
(peers.Seed004ZsetLimiter); sluice is RateLimiter in strict and leased mode. A sluice build
without a topology's RedisStore keywords prints "sluice: <topology> not supported by this build"
for that row.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import redis  # noqa: E402
from redis.cluster import ClusterNode, RedisCluster  # noqa: E402
from redis.sentinel import Sentinel  # noqa: E402

import sluice  # noqa: E402
from local_redis import LocalRedis  # noqa: E402
from peers import Seed004ZsetLimiter  # noqa: E402
from redis_topologies import LocalRedisCluster, LocalSentinelGroup, local_tls_redis  # noqa: E402

HUGE = 50_000_000  # never binds (see bench_cluster.py)
TENANTS = [f"{{tenant-{i}}}" for i in range(1000)]  # a hash tag each: spread over the slots
TOPOLOGIES = ["standalone", "cluster", "sentinel", "tls"]
ROWS = ["redis-py seed 004 ZSET Lua", "sluice strict", "sluice leased"]


class Unsupported(Exception):
    pass


@contextlib.contextmanager
def topology(name: str):
    """Yields (redis-py client factory, sluice RedisStore keyword arguments)."""
    if name == "standalone":
        with LocalRedis() as server:
            yield (lambda: redis.Redis(port=server.port)), {"port": server.port}
    elif name == "cluster":
        with LocalRedisCluster(masters=3, replicas_per_master=0) as cluster:
            seeds = cluster.seeds
            yield ((lambda: RedisCluster(startup_nodes=[ClusterNode(h, p) for h, p in seeds])),
                   {"cluster_nodes": [f"{h}:{p}" for h, p in seeds]})
    elif name == "sentinel":
        with LocalSentinelGroup(sentinels=3) as group:
            yield ((lambda: Sentinel(group.sentinels).master_for(group.service)),
                   {"sentinel_master": group.service,
                    "sentinels": [f"{h}:{p}" for h, p in group.sentinels]})
    else:
        with local_tls_redis() as server:
            ca = server.files.ca_file
            yield ((lambda: redis.Redis(port=server.tls_port, ssl=True, ssl_ca_certs=ca)),
                   {"port": server.tls_port, "tls": True, "tls_ca_file": ca,
                    "tls_cert_file": None})


def decider(row: str, make_client, store_kwargs: dict, prefix: str):
    if row.startswith("redis-py"):
        return Seed004ZsetLimiter(make_client(), f"{prefix}-seed", HUGE, 60_000).try_acquire
    try:
        store = sluice.RedisStore(command_timeout=1.0, **store_kwargs)
    except TypeError as e:  # the build predates this topology's keywords
        raise Unsupported(str(e)) from e
    mode = "leased" if row == "sluice leased" else "strict"
    return sluice.RateLimiter([sluice.Window(HUGE, 60.0)], redis=store,
                              redis_name=f"{prefix}-{mode}", mode=mode, local_share=1).allow


def measure(decide, calls: int, seconds: float):
    """Decisions per second and p50 / p99 microseconds over up to `calls` decisions or
    `seconds`, whichever ends first, cycling the tenants."""
    for tenant in TENANTS[:50]:
        decide(tenant)  # connect, load scripts, read the slot map
    samples = []
    start = time.perf_counter()
    end = start + seconds
    i = 0
    while i < calls and time.perf_counter() < end:
        t0 = time.perf_counter_ns()
        decide(TENANTS[i % len(TENANTS)])
        samples.append(time.perf_counter_ns() - t0)
        i += 1
    elapsed = time.perf_counter() - start
    samples.sort()
    return (len(samples) / elapsed, samples[len(samples) // 2] / 1000,
            samples[len(samples) * 99 // 100] / 1000)


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="1 round of up to 2,000 decisions")
    args = parser.parse_args()
    rounds, calls, seconds = (1, 2000, 1.0) if args.quick else (3, 20_000, 5.0)
    print(f"sluice {sluice.__version__} cluster scope on Redis topologies vs redis-py + seed 004 "
          f"ZSET Lua; {len(TENANTS)} tenants, {rounds} round(s) of up to {calls} decisions "
          f"({seconds} s cap), one process; {os.cpu_count()} cores\n")
    print(f"{'topology':11} {'client':28} {'decisions/s':>12} {'p50 us':>8} {'p99 us':>8} "
          f"{'x peer/s':>9}")
    for name in TOPOLOGIES:
        with topology(name) as (make_client, store_kwargs):
            results: dict[str, list] = {row: [] for row in ROWS}
            unsupported: dict[str, str] = {}
            for r in range(rounds):
                for row in ROWS:
                    if row in unsupported:
                        continue
                    try:
                        decide = decider(row, make_client, store_kwargs, f"r{r}")
                    except Unsupported as e:
                        unsupported[row] = str(e)
                        continue
                    results[row].append(measure(decide, calls, seconds))
            peer_rate = (statistics.median(x[0] for x in results[ROWS[0]])
                         if results[ROWS[0]] else 0.0)
            for row in ROWS:
                if row in unsupported:
                    print(f"{name:11} {row:28} sluice: {name} not supported by this build")
                    continue
                rate = statistics.median(x[0] for x in results[row])
                p50 = statistics.median(x[1] for x in results[row])
                p99 = statistics.median(x[2] for x in results[row])
                ratio = f"{rate / peer_rate:9.2f}" if peer_rate else f"{'-':>9}"
                print(f"{name:11} {row:28} {rate:12.0f} {p50:8.1f} {p99:8.1f} {ratio}")
    print("\n(x peer/s: decisions per second over the redis-py row's on the same topology; "
          "medians of the rounds. Limits never bind: this measures the cost of a decision.)")


if __name__ == "__main__":
    main()
