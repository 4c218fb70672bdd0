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

Then failover: the time from the event until each client's first successful decision served by
the node that took over. Cluster: a master is SIGKILLed (its replica is promoted after
cluster-node-timeout, 1 s). Sentinel: SENTINEL FAILOVER (an orderly switch; the old master keeps
accepting writes until the sentinels demote it, so a success there does not count). "Served by the
node that took over" is read on that node: its INFO commandstats counter of the client's script
command (EVAL for redis-py, EVALSHA for sluice) grew during the call. sluice is a strict
RateLimiter (on_failure="deny", command_timeout 1 s, its other defaults); the peer is redis-py with
its default retry settings (RedisCluster(startup_nodes=...), Sentinel(...).master_for(...))
running the seed's ZSET script. Each client polls in its own thread, 1 ms between attempts, both
clients in the same run; the median of `--failover-runs` runs (default 3) is printed.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import redis  # noqa: E402
from redis.cluster import ClusterNode, RedisCluster  # noqa: E402
from redis.sentinel import Sentinel  # noqa: E402

import sluice  # noqa: E402
from local_redis import LocalRedis  # noqa: E402
from peers import Seed004ZsetLimiter  # noqa: E402
from redis_topologies import (LocalRedisCluster, LocalSentinelGroup, key_slot,  # noqa: E402
                             local_tls_redis)

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


# -- failover: time to the first success on the node that took over ---------------------------

FAILOVER_LIMIT_S = 30.0  # a client that has not succeeded by then is reported as "> 30 s"
POLL_S = 0.001


def _script_calls(node: redis.Redis, command: str) -> int:
    """How many times `node` ran `command` (INFO commandstats): which node served a call."""
    stats = node.info("commandstats").get(f"cmdstat_{command}")
    return int(stats["calls"]) if stats else 0


def _first_success(decide, successor: redis.Redis, command: str, since: float, out: dict,
                   name: str) -> None:
    """Polls `decide` until it succeeds on `successor`; stores seconds since `since` (or None)."""
    out[name] = None
    while time.monotonic() - since < FAILOVER_LIMIT_S:
        try:
            before = _script_calls(successor, command)
            ok = decide()
            if ok and _script_calls(successor, command) > before:
                out[name] = time.monotonic() - since
                return
        except (redis.RedisError, OSError):
            pass  # the peer's errors while the topology changes; sluice raises none here
        time.sleep(POLL_S)


def _sluice_decider(store_kwargs: dict, rule: str):
    store = sluice.RedisStore(command_timeout=1.0, **store_kwargs)
    # A million per year never binds here and keeps the key in Redis (a key expires when its
    # window is whole again), so that its slot can be found.
    limiter = sluice.RateLimiter([sluice.Window(1_000_000, 366 * 86400.0)], redis=store,
                                 redis_name=rule, on_failure="deny", local_share=1)

    def decide(key: str) -> bool:
        # Strict: allowed, and not by the failure mode.
        before = limiter.failure_mode_decisions
        return limiter.try_acquire(key).allowed and limiter.failure_mode_decisions == before

    return store, decide


def _race(sluice_decide, peer_decide, successor: redis.Redis, event) -> dict:
    """Runs `event`, then both clients' polls side by side; returns their seconds."""
    out: dict = {}
    since = time.monotonic()
    event()
    threads = [threading.Thread(target=_first_success,
                                args=(sluice_decide, successor, "evalsha", since, out, "sluice")),
               threading.Thread(target=_first_success,
                                args=(peer_decide, successor, "eval", since, out, "peer"))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return out


def cluster_failover_run(cluster: LocalRedisCluster, r: int) -> dict:
    """Kills the master of the shard that holds sluice's key; both clients decide on that shard."""
    store_kwargs = {"cluster_nodes": [f"{h}:{p}" for h, p in cluster.seeds]}
    rule = f"fo{r}"
    _store, decide = _sluice_decider(store_kwargs, rule)
    key = "tenant-failover"
    for _ in range(20):
        decide(key)
    sluice_keys = [k for m in cluster.current_masters()
                   for k in cluster.client(m).scan_iter(match=f"sluice:{{{rule}:*")]
    shard = cluster.shard_of_slot(key_slot(sluice_keys[0]))
    peer_id = next(f"{{p{i}}}" for i in range(10_000)
                   if cluster.shard_of_slot(key_slot(f"p{i}")) == shard)
    peer = Seed004ZsetLimiter(RedisCluster(startup_nodes=[ClusterNode(h, p)
                                                          for h, p in cluster.seeds]),
                              f"fo{r}", HUGE, 60_000)
    for _ in range(20):
        peer.try_acquire(peer_id)
    master = cluster.master_for_slot(cluster.slot_range(shard)[0])
    successor = next(i for i in (shard, cluster.replica_index(shard)) if i != master)
    victim: list = []
    out = _race(lambda: decide(key), lambda: peer.try_acquire(peer_id),
                cluster.client(successor), lambda: victim.append(cluster.kill_master(shard)))
    cluster.wait_for_failover()
    cluster.restart_node(victim[0])  # whole again for the next run
    peer.client.close()
    return out


def sentinel_failover_run(group: LocalSentinelGroup, r: int) -> dict:
    group.wait_ready()  # the demoted master of the last run is a replica again
    store_kwargs = {"sentinel_master": group.service,
                    "sentinels": [f"{h}:{p}" for h, p in group.sentinels]}
    store, decide = _sluice_decider(store_kwargs, f"fo{r}")
    peer = Seed004ZsetLimiter(Sentinel(group.sentinels).master_for(group.service),
                              f"fo{r}", HUGE, 60_000)
    for _ in range(20):
        decide("tenant-failover")
        peer.try_acquire("tenant-failover")
    successor = redis.Redis(port=group.replica_port, password=group.password, socket_timeout=2.0)
    old: list = []
    out = _race(lambda: decide("tenant-failover"), lambda: peer.try_acquire("tenant-failover"),
                successor, lambda: old.append(group.failover()))
    group.wait_for_new_master(old[0])
    out["topology_changes"] = store.stats()["topology_changes"]
    peer.client.close()
    return out


def failover(runs: int) -> None:
    print(f"\nfailover: seconds from the event to the first successful decision served by the "
          f"node that took over (median of {runs} run(s); '> {FAILOVER_LIMIT_S:.0f}' if none)\n")
    print(f"{'topology':11} {'event':22} {'sluice strict':>14} {'redis-py peer':>14}  runs "
          f"(sluice / peer)")
    for name, event, start, one_run in (
            ("cluster", "SIGKILL a master", lambda: LocalRedisCluster(masters=3,
                                                                       replicas_per_master=1),
             cluster_failover_run),
            ("sentinel", "SENTINEL FAILOVER", lambda: LocalSentinelGroup(sentinels=3),
             sentinel_failover_run)):
        with start() as topo:
            results = [one_run(topo, r) for r in range(runs)]

        def median(who: str) -> str:
            values = [x[who] for x in results]
            if any(v is None for v in values):
                return f"> {FAILOVER_LIMIT_S:.0f}"
            return f"{statistics.median(values):.3f}"

        each = ", ".join(
            "/".join("-" if x[w] is None else f"{x[w]:.2f}" for w in ("sluice", "peer"))
            for x in results)
        print(f"{name:11} {event:22} {median('sluice'):>14} {median('peer'):>14}  {each}")


def throughput(rounds: int, calls: int, seconds: float) -> None:
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


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="1 round of up to 2,000 decisions")
    parser.add_argument("--failover-runs", type=int, default=None,
                        help="failover runs per topology (default 3; --quick: 1; 0: skip)")
    parser.add_argument("--failover-only", action="store_true",
                        help="skip the decisions-per-second table")
    args = parser.parse_args()
    runs = args.failover_runs if args.failover_runs is not None else (1 if args.quick else 3)
    rounds, calls, seconds = (1, 2000, 1.0) if args.quick else (3, 20_000, 5.0)
    if not args.failover_only:
        throughput(rounds, calls, seconds)
    if runs > 0:
        failover(runs)


if __name__ == "__main__":
    main()
