"""The Python peers sluice is measured against, reproduced from their published logic.

* ``Seed004ZsetLimiter``: the Redis ZSET sliding window of seed 004, section 2.2.1 (one EVAL of
  its Lua script per decision, the millisecond timestamp as both score and member).
* ``DifyHelperLimiter``: Dify's ``api/libs/helper.py`` ``RateLimiter`` (ZREMRANGEBYSCORE, ZCARD,
  then ZADD and EXPIRE: four round trips, the second as both score and member), as described in
  shared/reference/dify.md section 1a.
* ``LimitsPeer``: the ``limits`` library (used by Flask-Limiter), in-memory or Redis storage.
"""

from __future__ import annotations

import time

SEED_004_LUA = """
local key = KEYS[1]
local current_time = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
local limit = tonumber(ARGV[3])
redis.call('ZREMRANGEBYSCORE', key, 0, current_time - window)
local count = redis.call('ZCARD', key)
if count < limit then
    redis.call('ZADD', key, current_time, current_time)
    redis.call('EXPIRE', key, 60)
    return 1
else
    return 0
end
"""


class Seed004ZsetLimiter:
    def __init__(self, client, prefix: str, limit: int, window_ms: int) -> None:
        self.client, self.prefix, self.limit, self.window_ms = client, prefix, limit, window_ms

    def try_acquire(self, identifier: str) -> bool:
        key = f"{self.prefix}:{identifier}"
        now_ms = int(time.time() * 1000)
        return self.client.eval(SEED_004_LUA, 1, key, now_ms, self.window_ms, self.limit) == 1

    def recorded(self, identifier: str) -> int:
        return self.client.zcard(f"{self.prefix}:{identifier}")


class DifyHelperLimiter:
    def __init__(self, client, prefix: str, max_attempts: int, time_window: int) -> None:
        self.client, self.prefix = client, prefix
        self.max_attempts, self.time_window = max_attempts, time_window

    def _key(self, email: str) -> str:
        return f"{self.prefix}:{email}"

    def is_rate_limited(self, email: str) -> bool:
        key = self._key(email)
        current_time = int(time.time())
        window_start_time = current_time - self.time_window
        self.client.zremrangebyscore(key, "-inf", window_start_time)
        attempts = self.client.zcard(key)
        return bool(attempts and int(attempts) >= self.max_attempts)

    def increment_rate_limit(self, email: str) -> None:
        key = self._key(email)
        current_time = int(time.time())
        self.client.zadd(key, {current_time: current_time})
        self.client.expire(key, self.time_window * 2)

    def try_acquire(self, email: str) -> bool:
        if self.is_rate_limited(email):
            return False
        self.increment_rate_limit(email)
        return True

    def recorded(self, email: str) -> int:
        return self.client.zcard(self._key(email))


class LimitsPeer:
    """``limits`` with in-memory storage, or Redis storage when `redis_url` is given."""

    def __init__(self, strategy: str, limit: int, per_seconds: int, redis_url: str = "") -> None:
        from limits import RateLimitItemPerSecond, storage, strategies

        store = storage.RedisStorage(redis_url) if redis_url else storage.MemoryStorage()
        cls = {"fixed": strategies.FixedWindowRateLimiter,
               "moving": strategies.MovingWindowRateLimiter,
               "sliding": strategies.SlidingWindowCounterRateLimiter}[strategy]
        self.limiter = cls(store)
        self.item = RateLimitItemPerSecond(limit, per_seconds)

    def try_acquire(self, key: str) -> bool:
        return self.limiter.hit(self.item, key)
