"""ResponseCache hit latency from Python for a 2 KB answer, beside cachetools' LRU and TTL caches
and a plain dict, in one run (median of 5 runs of 200,000 hits). Budget: <= 1 us per hit.

    python benchmarks/python/bench_cache.py

Every cache is looked up with a key made beforehand (sluice's CacheKey; the request digest for
the others), so the figures compare the stores, not the key building, which is shown apart:
sluice.cache_key on a 1 KB request beside Python's json.dumps(sort_keys=True) + hashlib.sha256,
the usual Python way (which is not RFC 8785: see tests/python/test_cache.py).

Then the Redis tier, on a redis-server the script starts: a read-through from Redis (the process
tier too small to hold the keys) beside redis-py's GET of the same 2 KB answers, the way
Python-over-Redis caches read.
"""

import hashlib
import json

import cachetools
import redis

import sluice
from local_redis import LocalRedis
from timing import per_call

N = 10_000

def main():
    # A distinct 2 KB answer per question, shared by the four caches (each hands back a reference).
    answers = [b"%05d" % i + b"x" * 2043 for i in range(N)]
    bodies = [json.dumps({"model": "qwen", "messages": [{"role": "user", "content": f"q{i}"}]})
              .encode() for i in range(N)]
    keys = [sluice.cache_key(b) for b in bodies]
    digests = [k.digest for k in keys]

    cache = sluice.ResponseCache(max_bytes=256 << 20)
    lru = cachetools.LRUCache(maxsize=N)
    ttl = cachetools.TTLCache(maxsize=N, ttl=3600)
    plain = {}
    for k, d, answer in zip(keys, digests, answers):
        cache.put(k, answer)
        lru[d] = ttl[d] = plain[d] = answer

    it = iter(range(1 << 62))
    rows = [
        ("sluice ResponseCache.get", lambda: cache.get(keys[next(it) % N])),
        ("cachetools LRUCache[key]", lambda: lru[digests[next(it) % N]]),
        ("cachetools TTLCache[key]", lambda: ttl[digests[next(it) % N]]),
        ("dict[key]", lambda: plain[digests[next(it) % N]]),
    ]
    print(f"Hit latency from Python, 2 KB answers, {N} entries (median of 5)")
    base = None
    for name, fn in rows:
        t = per_call(fn, number=200_000)
        base = base or t
        print(f"  {name:<28} {t * 1e9:7.0f} ns   {t / base:4.2f}x sluice")

    request = json.dumps({"model": "gpt-4o", "temperature": 0.7, "stream": True, "messages": [
        {"role": "system", "content": "s" * 400}, {"role": "user", "content": "u" * 500}]}).encode()

    def python_key():
        fields = json.loads(request)
        for name in ("stream", "user"):
            fields.pop(name, None)
        return hashlib.sha256(json.dumps(fields, sort_keys=True, separators=(",", ":")).encode())

    print("\nBuilding the key of a 1 KB request (median of 5)")
    t_sluice = per_call(lambda: sluice.cache_key(request, "tenant"), number=50_000)
    t_python = per_call(python_key, number=50_000)
    print(f"  sluice.cache_key (RFC 8785 + XXH3-128)            {t_sluice * 1e6:6.2f} us")
    print(f"  json.loads + json.dumps(sort_keys) + sha256       {t_python * 1e6:6.2f} us   "
          f"{t_python / t_sluice:4.2f}x sluice")

    redis_tier(keys, digests, answers)


def redis_tier(keys, digests, answers):
    with LocalRedis() as server:
        store = sluice.RedisStore(port=server.port, command_timeout=0.05)
        writer = sluice.ResponseCache(max_bytes=256 << 20, redis=store)
        # 64 KiB in process holds ~25 of the 10,000 answers: nearly every lookup goes to Redis.
        reader = sluice.ResponseCache(max_bytes=64 << 10, shards=1, redis=store)
        client = redis.Redis(port=server.port)
        for k, d, answer in zip(keys, digests, answers):
            writer.put(k, answer)
            client.set(d, answer)
        while writer.stats()["redis_writes"] < N:
            pass

        fallthroughs = []

        def upstream():  # only if a Redis read failed (counted, shown)
            fallthroughs.append(1)
            return b"upstream"

        it = iter(range(1 << 62))
        t_sluice = per_call(lambda: reader.get_or_fetch(keys[next(it) % N], upstream),
                            number=20_000)
        t_redis_py = per_call(lambda: client.get(digests[next(it) % N]), number=20_000)
        stats = reader.stats()
        print("\nA read from the Redis tier, 2 KB answers, loopback (median of 5)")
        print(f"  sluice get_or_fetch, Redis hit (verified)   {t_sluice * 1e6:6.1f} us   "
              f"({stats['redis_hits']} Redis hits, {stats['hits']} process hits, "
              f"{len(fallthroughs)} failed reads)")
        print(f"  redis-py GET                                {t_redis_py * 1e6:6.1f} us   "
              f"{t_redis_py / t_sluice:4.2f}x sluice")


if __name__ == "__main__":
    main()
