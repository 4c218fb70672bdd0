"""Dify's attempt limiter (``libs/helper.py`` ``RateLimiter``) on sluice's exact sliding window.

Dify keeps a Redis sorted set per key (ZREMRANGEBYSCORE, ZCARD, then ZADD + EXPIRE: four round
trips, members of one second colliding). ``AttemptLimiter`` has the same interface and the
semantics users rely on, exactly: never more than ``max_attempts`` recorded attempts in any
interval of ``time_window`` seconds (``sluice.Window.sliding``: a log of the last max_attempts
admission times per key, checked and recorded in one atomic step). An attempt over the limit is
not recorded (Dify's ZADD would record it and so lengthen the lockout).

Scope: process by default; host with ``shared_region=``, cluster with ``redis=`` and
``redis_name=`` (sluice.RateLimiter's options), or the defaults ``sluice.dify.install`` sets.
"""

from __future__ import annotations

import hashlib
import math
import re
from typing import Any, Dict

from .. import RateLimiter, Window
from .._core import SLIDING_MAX_LIMIT
from .._errors import InvalidArgument
from ._args import checked_count, checked_id, checked_seconds

# Options install() gives every AttemptLimiter made without scope options of its own:
# {"scope": "host" | "cluster" | "process", "name": policy name, "redis": RedisStore,
#  "local_share": processes sharing a cluster-scope limit while Redis cannot answer}.
_defaults: Dict[str, Any] = {}


def configure_defaults(scope: str = "process", *, name: str = "dify", redis: Any = None,
                       local_share: int = 1) -> Dict[str, Any]:
    """Sets the scope of AttemptLimiters made without scope options from now on (Dify makes
    its limiters at import time: call this, or install(), before Dify imports its services);
    returns the previous defaults. Cluster scope (`redis`, a sluice.RedisStore): while Redis
    cannot answer, each process admits max_attempts / `local_share` (at least 1)."""
    global _defaults
    checked_count("configure_attempt_limiters", "local_share", local_share, 1)
    previous, _defaults = _defaults, {"scope": scope, "name": name, "redis": redis,
                                      "local_share": local_share}
    return previous


def _shared_name(policy_name: str, prefix: str) -> str:
    """A region / Redis name for `prefix`: [A-Za-z0-9._-], unique per prefix."""
    readable = re.sub(r"[^A-Za-z0-9._-]", "_", prefix)[:60]
    digest = hashlib.sha256(prefix.encode()).hexdigest()[:12]
    return f"{policy_name}.attempts.{readable}.{digest}"


class AttemptLimiter:
    """Dify's ``helper.RateLimiter(prefix, max_attempts, time_window)``: at most `max_attempts`
    attempts per key in any `time_window` seconds. `member_factory` and `redis_client` are
    accepted for Dify's signature and not needed (no sorted set, no member collisions).
    `clock`, `shared_region`, `redis`, `redis_name`, `max_keys` go to sluice.RateLimiter."""

    def __init__(self, prefix: str, max_attempts: int, time_window: float,
                 member_factory: Any = None, redis_client: Any = None, *,
                 clock: Any = None, **scope: Any) -> None:
        self.prefix = checked_id("AttemptLimiter", "prefix", prefix)
        self.max_attempts = checked_count("AttemptLimiter", "max_attempts", max_attempts, 1)
        if max_attempts > SLIDING_MAX_LIMIT:
            raise InvalidArgument(f"sluice.dify.AttemptLimiter: max_attempts must be at most "
                                  f"{SLIDING_MAX_LIMIT} (an exact sliding log), got {max_attempts}")
        self.time_window = checked_seconds("AttemptLimiter", "time_window", time_window)
        if not scope and _defaults.get("scope") == "host":
            scope = {"shared_region": _shared_name(_defaults["name"], prefix)}
        elif not scope and _defaults.get("scope") == "cluster":
            scope = {"redis": _defaults["redis"],
                     "redis_name": _shared_name(_defaults["name"], prefix),
                     "on_failure": "local", "local_share": _defaults["local_share"]}
        self._limiter = RateLimiter([Window.sliding(self.max_attempts, self.time_window)],
                                    clock=clock, **scope)

    def _key(self, key: str) -> str:
        return f"{self.prefix}:{checked_id('AttemptLimiter', 'key', key)}"

    def is_rate_limited(self, key: str) -> bool:
        """True when `key` has max_attempts attempts in the last time_window seconds."""
        return not self._limiter.peek(self._key(key)).allowed

    def increment_rate_limit(self, key: str) -> bool:
        """Records an attempt for `key`; returns whether it was recorded (False: the key is
        limited, and nothing was recorded)."""
        return bool(self._limiter.try_acquire(self._key(key)))

    def seconds_until_available(self, key: str) -> int:
        """Whole seconds until `key` may attempt again, at least 1 (Dify's contract: callers put
        it in messages and Retry-After)."""
        decision = self._limiter.peek(self._key(key))
        if decision.allowed:
            return 1
        return max(1, math.ceil(decision.retry_after))
