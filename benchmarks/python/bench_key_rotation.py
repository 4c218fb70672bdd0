"""Key rotation (issue 17): Dify's LBModelManager.fetch_next against sluice.dify's, side by side.

    python benchmarks/python/bench_key_rotation.py

The peer is Dify's logic written from its description (api/core/model_manager.py, see
../shared/reference/dify-integration.md section 3), on redis-py against a redis-server this
script starts on a free loopback port: INCR of the tuple's cursor (EXPIRE 3600), then EXISTS of
each config's cooldown key, skipping those cooling down. sluice.dify.LBModelManager in host scope
(shared memory) and in cluster scope (cooldowns mirrored from the same Redis). Three configs, one
cooling down. Per call: the median of 5 timeit runs (timing.py). A second figure: how long after
one "host" cools a key down another host stops handing it out (Dify: at once, every pick asks
Redis; sluice cluster scope: within its redis_refresh, 0.25 s by default).
"""

from __future__ import annotations

import os
import random
import sys
import time
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import redis  # noqa: E402

import sluice  # noqa: E402
import sluice.dify as dify  # noqa: E402
from local_redis import LocalRedis  # noqa: E402
from timing import per_call  # noqa: E402

TUPLE = ("tenant-1", "openai", "llm", "gpt-4o")
CONFIGS = ("k1", "k2", "k3")
TRIALS = 9


class Config:
    def __init__(self, id: str) -> None:
        self.id, self.name, self.credentials = id, f"key {id}", {}


class DifyPeer:
    """Dify's LBModelManager.fetch_next / cooldown on redis-py (a peer, written from the
    reference's description, not copied)."""

    def __init__(self, client: redis.Redis, configs) -> None:
        self.client, self.configs = client, configs
        self.cursor = "model_lb_index:" + ":".join(TUPLE)

    def _cooldown_key(self, config) -> str:
        return f"model_lb_index:cooldown:{':'.join(TUPLE)}:{config.id}"

    def fetch_next(self):
        for _ in range(len(self.configs)):
            index = self.client.incr(self.cursor)
            if index == 1:
                self.client.expire(self.cursor, 3600)
            config = self.configs[(index - 1) % len(self.configs)]
            if self.client.exists(self._cooldown_key(config)):
                continue
            return config
        return None

    def cooldown(self, config, expire: int = 60) -> None:
        self.client.set(self._cooldown_key(config), "true", ex=expire)


def main() -> None:
    configs = [Config(c) for c in CONFIGS]
    rows = []
    with LocalRedis() as server:
        client = redis.Redis(port=server.port)
        peer = DifyPeer(client, configs)
        peer.cooldown(configs[0])
        rows.append(("Dify (redis-py: INCR + EXISTS per config)", per_call(peer.fetch_next, 2000)))

        region = f"bench-keys-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        previous = dify.configure_key_rotation("host", region_prefix=region)
        try:
            manager = dify.LBModelManager(*TUPLE, configs)
            manager.cooldown(configs[0], 60)
            rows.append(("sluice.dify host scope (shared memory)",
                         per_call(manager.fetch_next, 20000)))
            store = sluice.RedisStore(port=server.port, command_timeout=0.5)
            dify.configure_key_rotation("cluster", region_prefix=region + "-c", redis=store)
            manager = dify.LBModelManager(*TUPLE, configs)
            manager.cooldown(configs[0], 60)
            rows.append(("sluice.dify cluster scope (Redis, mirrored)",
                         per_call(manager.fetch_next, 20000)))

            # Propagation: another "host" (its own region) cools k2; how long until this one
            # stops handing k2 out.
            other_store = sluice.RedisStore(port=server.port, command_timeout=0.5)
            delays = []
            pause = random.Random(17)
            for trial in range(TRIALS):
                dify.configure_key_rotation("cluster", region_prefix=f"{region}-o{trial}",
                                            redis=other_store)
                other = dify.LBModelManager(*TUPLE, configs)
                dify.configure_key_rotation("cluster", region_prefix=f"{region}-h{trial}",
                                            redis=store)
                here = dify.LBModelManager(*TUPLE, configs)
                here.restore(configs[1])
                time.sleep(0.3)  # both mirrors settled: k2 free everywhere
                here.in_cooldown(configs[1])  # a fresh read here, then the cooldown at a random
                time.sleep(pause.uniform(0, 0.25))  # point of this host's refresh interval
                other.cooldown(configs[1], 60)
                start = time.monotonic()
                while not here.in_cooldown(configs[1]) and time.monotonic() - start < 5:
                    time.sleep(0.001)
                delays.append(time.monotonic() - start)
        finally:
            dify.configure_key_rotation(**previous)
            for name in [region, region + "-c"] + [f"{region}-{s}{t}" for s in "oh"
                                                    for t in range(TRIALS)]:
                for made in (name, name + ".endpoints"):
                    try:
                        sluice.remove_shared_region(made)
                    except sluice.NotFound:
                        pass
    peer_us = rows[0][1] * 1e6
    print("Key rotation: fetch_next with 3 configs, one cooling down (median of 5 runs)\n")
    print("| implementation | µs per fetch_next | vs Dify |")
    print("|---|---:|---:|")
    for name, seconds in rows:
        print(f"| {name} | {seconds * 1e6:.1f} | {peer_us / (seconds * 1e6):.1f}x |")
    delays.sort()
    print(f"\nA cooldown set on one host, seen by another (sluice cluster scope, redis_refresh "
          f"0.25 s, {TRIALS} trials at random points of the refresh interval): median "
          f"{delays[TRIALS // 2] * 1000:.0f} ms, max {delays[-1] * 1000:.0f} ms (Dify: the next "
          f"pick, which asks Redis every time)")


if __name__ == "__main__":
    main()
