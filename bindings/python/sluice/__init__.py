"""sluice: governance of AI traffic from inside the process that sends or serves it.

The objects (all thread-safe, none of them ever blocks the caller's loop)::

    RateLimiter         requests per key, several windows at once (GCRA, exact)
    LeakyBucket         shaping: a steady departure rate with a bounded wait
    ConcurrencyLimiter  in-flight cap per key; permits are leases that cannot leak
    TokenBudget         LLM tokens per key: reserve before the call, settle after
    Balancer            picks an endpoint: least request, prefix affinity, metrics, key rotation
    FallbackPolicy      a chain of targets with circuit breakers, a retry budget and a deadline;
                        ``call``/``stream`` (and ``*_async``) run a function through it
    ResponseCache       answers under canonical request keys (``cache_key``), byte-bounded,
                        W-TinyLFU with an adaptive window
    MetricsRegistry     Prometheus counters, gauges, histograms; host-wide in shared memory
                        (``PrometheusCollector`` hands them to prometheus_client)

Example (a Flask view in a Dify-style gevent worker)::

    import sluice

    per_tenant = sluice.RateLimiter([sluice.Window.per_second(10, burst=20),
                                     sluice.Window.per_day(50_000)])
    per_app = sluice.ConcurrencyLimiter(max_in_flight=10, lease=1200)

    def chat(tenant, app):
        try:
            per_tenant.acquire(tenant)           # or: if not per_tenant.allow(tenant): ...
            with per_app.acquire(app, timeout=2.0):
                return call_model()
        except sluice.RateLimited as e:
            return "busy", 429, e.headers()

Host scope: pass ``shared_region="name"`` (the same name and configuration in every worker) and
the state lives in shared memory, so all the processes of a host (Gunicorn and Celery workers)
share one limit; see ``remove_shared_region``.

Waiting methods (``acquire`` with a timeout, ``LeakyBucket.acquire``) sleep cooperatively under
gevent; coroutines use the ``*_async`` variants. Times are float seconds.
"""

from __future__ import annotations


import warnings
from typing import Any, Dict, Optional

from . import _core
from ._core import Clock, Decision, ManualClock, PendingCount, PendingDecision, PendingPermit
from ._core import PendingReservation
from ._core import SLIDING_MAX_LIMIT, Permit, RedisStore, Reservation, Window
from ._core import ChatMessage, EngineMetrics, LlmRequest, Pick
from ._core import parse_engine_metrics, parse_request, prefix_block_hashes
from ._core import coarse_steady_clock, remove_shared_region, steady_clock
from ._core import tsc_clock, tsc_clock_status
from ._core import FallbackCall, classify, parse_retry_after
from ._core import CacheKey, cache_key, canonical_json, completion_to_sse, sse_to_completion
from ._core import (Usage, UsageReader, estimate_prompt_tokens, estimate_text_tokens,
                    include_usage_in_stream, read_usage)
from ._core import Counter, Gauge, Histogram, MetricsRegistry
from ._errors import (
    AlreadyExists,
    CapacityError,
    Error,
    FailedPrecondition,
    InvalidArgument,
    LeaseExpired,
    NotFound,
    PermissionDenied,
    RateLimited,
    AttemptFailed,
    DeadlineExceeded,
    StreamBroken,
    Unavailable,
)
from ._fallback import Attempt, FallbackPolicy, outcome_of
from ._cache import ResponseCache
from ._governor import Admission, Governor, PolicyWatcher, RuleRateLimited
from ._metrics import PrometheusCollector
from ._leases import install as _install_lease_methods
from ._waiting import MAX_SECONDS as _MAX_SECONDS
from ._waiting import checked_timeout as _checked_timeout
from ._waiting import monotonic as _monotonic
from ._waiting import pending_plan as _pending_plan
from ._waiting import run_plan as _run_plan
from ._waiting import run_plan_async as _run_plan_async

_install_lease_methods()

__version__: str = _core.__version__

__all__ = [
    "AlreadyExists",
    "Balancer",
    "ChatMessage",
    "EngineMetrics",
    "LlmRequest",
    "Pick",
    "parse_engine_metrics",
    "parse_request",
    "prefix_block_hashes",
    "CapacityError",
    "Clock",
    "ConcurrencyLimiter",
    "Decision",
    "Error",
    "FailedPrecondition",
    "InvalidArgument",
    "LeakyBucket",
    "LeaseExpired",
    "ManualClock",
    "NotFound",
    "PendingDecision",
    "PendingPermit",
    "PendingCount",
    "PendingReservation",
    "PermissionDenied",
    "Permit",
    "RateLimited",
    "RateLimiter",
    "RedisStore",
    "Reservation",
    "TokenBudget",
    "Window",
    "SLIDING_MAX_LIMIT",
    "coarse_steady_clock",
    "remove_shared_region",
    "steady_clock",
    "tsc_clock",
    "tsc_clock_status",
    "Attempt",
    "AttemptFailed",
    "DeadlineExceeded",
    "FallbackCall",
    "FallbackPolicy",
    "StreamBroken",
    "Unavailable",
    "classify",
    "outcome_of",
    "parse_retry_after",
    "CacheKey",
    "ResponseCache",
    "cache_key",
    "canonical_json",
    "Admission",
    "Governor",
    "PolicyWatcher",
    "RuleRateLimited",
    "Usage",
    "UsageReader",
    "estimate_prompt_tokens",
    "estimate_text_tokens",
    "include_usage_in_stream",
    "read_usage",
    "Counter",
    "Gauge",
    "Histogram",
    "MetricsRegistry",
    "PrometheusCollector",
    "completion_to_sse",
    "sse_to_completion",
]


def _deprecated(old: str, new: str, depth: int = 0) -> None:
    """Warns (at the line of the caller of the method calling this, `depth` frames further out)
    that `old` is a deprecated alias of `new` (issue 14: one verb per meaning; the old names stay
    for a release)."""
    warnings.warn(f"sluice.{old} is deprecated: use {new}", DeprecationWarning,
                  stacklevel=3 + depth)


def _redis_name(owner: str, rule: Optional[str], options: Dict[str, Any]) -> Dict[str, Any]:
    """The constructor's options with the deprecated ``rule=`` moved to ``redis_name=``."""
    if rule is not None:
        _deprecated(f"{owner}(rule=...)", "redis_name=", depth=1)
        if options.get("redis_name") is not None:
            raise TypeError(f"sluice.{owner}: rule is the deprecated name of redis_name; pass "
                            "one of them")
        options["redis_name"] = rule
    return options


def _in_cluster(options: Dict[str, Any]) -> bool:
    return options.get("redis") is not None


# Cluster scope waits for Redis. There the facade waits on the reply's file descriptor with the
# caller's own loop (gevent, or poll for threads) instead of blocking the thread that runs every
# greenlet: each object has a cluster-scope subclass (a mixin over the class the caller named)
# with those methods, chosen in __new__, so process and host scope keep the native methods.
_CLUSTER_CLASSES: Dict[type, type] = {}


def _scoped_class(cls: type, options: Dict[str, Any], mixin: type) -> type:
    if not _in_cluster(options) or issubclass(cls, mixin):
        return cls
    variant = _CLUSTER_CLASSES.get(cls)
    if variant is None:
        variant = type(cls.__name__, (mixin, cls), {"__doc__": cls.__doc__,
                                                    "__module__": cls.__module__,
                                                    "__qualname__": cls.__qualname__})
        _CLUSTER_CLASSES[cls] = variant
    return variant


# The asyncio fast path (issue 19): an ``*_async`` call decides synchronously first, in its own
# coroutine frame, and builds a plan only when the decision says wait, or when the reply is not in
# (cluster scope). Admitted at once, it costs about what the synchronous call costs: no plan, no
# driver, no Future, nothing scheduled on the loop. The plans below take that first outcome
# (`first`: a Decision, Permit or Reservation already taken, or the pending call started) so that
# a refusal is not decided twice.
_PENDING_TYPES = (PendingDecision, PendingPermit, PendingReservation)


def _first_outcome(first):
    """The plan of a first outcome: waits for it if it is a pending call, else it is the outcome."""
    if first.__class__ in _PENDING_TYPES:
        return (yield from _pending_plan(first))
    return first


def _rate_limiter_plan(limiter, key, cost, timeout, first=None):
    """Waits for as long as the limiter says, while that fits in the timeout."""
    deadline = _monotonic() + timeout
    while True:
        decision = yield from _first_outcome(
            first if first is not None else limiter.start(key, cost))
        first = None
        if decision.allowed:
            return decision
        if decision.retry_after > deadline - _monotonic():
            raise RateLimited(decision)
        yield decision.retry_after


def _leaky_bucket_plan(bucket, key, cost, first=None):
    """Books a departure slot, then waits for it."""
    decision = yield from _first_outcome(first if first is not None else bucket.start(key, cost))
    if not decision.allowed:
        raise RateLimited(decision)
    if decision.delay > 0:
        yield decision.delay
    return decision


# Polling for a free slot backs off from 1 ms to 50 ms: a concurrency slot frees when a request
# ends, which no decision can predict.
_POLL_FIRST = 0.001
_POLL_MAX = 0.05


def _permit_plan(limiter, key, timeout, first=None):
    """Polls for a free slot until the timeout."""
    permit = yield from _first_outcome(first if first is not None else limiter.start(key))
    deadline = _monotonic() + timeout
    pause = _POLL_FIRST
    while not permit:
        left = deadline - _monotonic()
        if left <= 0:
            raise RateLimited(permit.decision)
        yield min(pause, left)
        pause = min(pause * 2, _POLL_MAX)
        permit = yield from _pending_plan(limiter.start(key))
    return permit


def _try_acquire_permit_plan(limiter, key):
    return (yield from _pending_plan(limiter.start(key)))


def _try_reserve_plan(budget, key, estimate):
    return (yield from _pending_plan(budget.start_reserve(key, estimate)))


def _reserve_plan(budget, key, estimate, first=None):
    reservation = yield from _first_outcome(
        first if first is not None else budget.start_reserve(key, estimate))
    if not reservation:
        raise RateLimited(reservation.decision)
    return reservation


class _RateLimiterInCluster:
    def try_acquire(self, key, cost: int = 1) -> Decision:
        return _run_plan(_pending_plan(self.start(key, cost)))

    def allow(self, key, cost: int = 1) -> bool:
        # Leased mode mostly decides from this process's lease: no waiting machinery at all.
        allowed = self.allow_without_waiting(key, cost)
        if allowed is None:
            return self.try_acquire(key, cost).allowed
        return allowed

    def peek(self, key) -> Decision:
        return _run_plan(_pending_plan(self.start_peek(key)))

    # The fast paths of cluster scope: leased mode decides most calls from this process's lease
    # (start() returns them done); only a reply still on its way goes through a plan.
    async def try_acquire_async(self, key, cost: int = 1) -> Decision:
        pending = self.start(key, cost)
        if pending.done():
            return pending.result()
        return await _run_plan_async(_pending_plan(pending))

    async def acquire_async(self, key: str, cost: int = 1, *, timeout: float = 0.0) -> Decision:
        if timeout.__class__ is not float or not 0.0 <= timeout <= _MAX_SECONDS:
            timeout = _checked_timeout(timeout)
        first = self.start(key, cost)
        if first.done():
            first = first.result()
            if first.allowed:
                return first
        return await _run_plan_async(_rate_limiter_plan(self, key, cost, timeout, first))


class RateLimiter(_core.RateLimiter):
    __doc__ = _core.RateLimiter.__doc__

    def __new__(cls, *args: Any, **options: Any) -> "RateLimiter":
        return super().__new__(_scoped_class(cls, options, _RateLimiterInCluster))

    def __init__(self, windows, *, rule: Optional[str] = None, **options: Any) -> None:
        super().__init__(windows, **_redis_name("RateLimiter", rule, options))

    async def try_acquire_async(self, key, cost: int = 1) -> Decision:
        """``try_acquire`` for coroutines: in cluster scope, awaits Redis's reply."""
        return self.try_acquire(key, cost)  # process and host scope decide at once

    def decide(self, key, cost: int = 1) -> Decision:
        """Deprecated alias of ``try_acquire`` (which returns the Decision now)."""
        _deprecated("RateLimiter.decide", "try_acquire")
        return self.try_acquire(key, cost)

    def decide_async(self, key, cost: int = 1):
        """Deprecated alias of ``try_acquire_async``."""
        _deprecated("RateLimiter.decide_async", "try_acquire_async")
        return self.try_acquire_async(key, cost)

    def acquire(self, key: str, cost: int = 1, *, timeout: float = 0.0) -> Decision:
        """Takes `cost` units or raises ``RateLimited``.

        With ``timeout > 0`` it first waits (cooperatively) for as long as the limiter says,
        provided the wait fits in the timeout.
        """
        return _run_plan(_rate_limiter_plan(self, key, cost, _checked_timeout(timeout)))

    async def acquire_async(self, key: str, cost: int = 1, *, timeout: float = 0.0) -> Decision:
        """``acquire`` for coroutines: waits with ``asyncio.sleep``. Admitted at once, it returns
        without scheduling anything on the loop (about the cost of ``try_acquire``)."""
        if timeout.__class__ is not float or not 0.0 <= timeout <= _MAX_SECONDS:
            timeout = _checked_timeout(timeout)
        decision = self.try_acquire(key, cost)  # process and host scope decide at once
        if decision.allowed:
            return decision
        return await _run_plan_async(_rate_limiter_plan(self, key, cost, timeout, decision))


class _LeakyBucketInCluster:
    def try_acquire(self, key, cost: int = 1) -> Decision:
        return _run_plan(_pending_plan(self.start(key, cost)))

    async def try_acquire_async(self, key, cost: int = 1) -> Decision:
        pending = self.start(key, cost)
        if pending.done():
            return pending.result()
        return await _run_plan_async(_pending_plan(pending))

    async def acquire_async(self, key: str, cost: int = 1) -> Decision:
        first = self.start(key, cost)
        if first.done():
            first = first.result()
            if first.allowed and first.delay <= 0:
                return first
        return await _run_plan_async(_leaky_bucket_plan(self, key, cost, first))


class LeakyBucket(_core.LeakyBucket):
    __doc__ = _core.LeakyBucket.__doc__

    def __new__(cls, *args: Any, **options: Any) -> "LeakyBucket":
        return super().__new__(_scoped_class(cls, options, _LeakyBucketInCluster))

    def __init__(self, rate, *args: Any, rule: Optional[str] = None, **options: Any) -> None:
        super().__init__(rate, *args, **_redis_name("LeakyBucket", rule, options))

    async def try_acquire_async(self, key, cost: int = 1) -> Decision:
        """``try_acquire`` for coroutines: in cluster scope, awaits Redis's reply."""
        return self.try_acquire(key, cost)  # process and host scope decide at once

    def acquire(self, key: str, cost: int = 1) -> Decision:
        """Books a slot and sleeps (cooperatively) until it comes; raises ``RateLimited`` if the
        wait would exceed ``max_wait``."""
        return _run_plan(_leaky_bucket_plan(self, key, cost))

    async def acquire_async(self, key: str, cost: int = 1) -> Decision:
        """``acquire`` for coroutines: waits with ``asyncio.sleep``. A slot due now returns
        without scheduling anything on the loop."""
        decision = self.try_acquire(key, cost)  # process and host scope decide at once
        if decision.allowed and decision.delay <= 0:
            return decision
        return await _run_plan_async(_leaky_bucket_plan(self, key, cost, decision))


class _ConcurrencyLimiterInCluster:
    def try_acquire(self, key) -> Permit:
        return _run_plan(_try_acquire_permit_plan(self, key))

    def in_flight(self, key) -> int:
        return _run_plan(_pending_plan(self.start_in_flight(key)))

    async def try_acquire_async(self, key) -> Permit:
        pending = self.start(key)
        if pending.done():
            return pending.result()
        return await _run_plan_async(_pending_plan(pending))

    async def acquire_async(self, key: str, *, timeout: float = 0.0) -> Permit:
        if timeout.__class__ is not float or not 0.0 <= timeout <= _MAX_SECONDS:
            timeout = _checked_timeout(timeout)
        first = self.start(key)
        if first.done():
            first = first.result()
            if first:
                return first
        return await _run_plan_async(_permit_plan(self, key, timeout, first))


class ConcurrencyLimiter(_core.ConcurrencyLimiter):
    __doc__ = _core.ConcurrencyLimiter.__doc__

    def __new__(cls, *args: Any, **options: Any) -> "ConcurrencyLimiter":
        return super().__new__(_scoped_class(cls, options, _ConcurrencyLimiterInCluster))

    def __init__(self, max_in_flight, *, rule: Optional[str] = None, **options: Any) -> None:
        super().__init__(max_in_flight, **_redis_name("ConcurrencyLimiter", rule, options))

    async def try_acquire_async(self, key) -> Permit:
        """``try_acquire`` for coroutines: in cluster scope, awaits Redis's reply."""
        return self.try_acquire(key)  # process and host scope decide at once

    def acquire(self, key: str, *, timeout: float = 0.0) -> Permit:
        """A permit for `key`, waiting (cooperatively) up to `timeout` seconds for a free slot;
        raises ``RateLimited`` if none frees in time. Use it as a context manager."""
        return _run_plan(_permit_plan(self, key, _checked_timeout(timeout)))

    async def acquire_async(self, key: str, *, timeout: float = 0.0) -> Permit:
        """``acquire`` for coroutines: polls with ``asyncio.sleep``. A free slot returns without
        scheduling anything on the loop."""
        if timeout.__class__ is not float or not 0.0 <= timeout <= _MAX_SECONDS:
            timeout = _checked_timeout(timeout)
        permit = self.try_acquire(key)  # process and host scope decide at once
        if permit:
            return permit
        return await _run_plan_async(_permit_plan(self, key, timeout, permit))


class _TokenBudgetInCluster:
    def try_reserve(self, key, estimate: int) -> Reservation:
        return _run_plan(_try_reserve_plan(self, key, estimate))

    def charge(self, key, tokens: int) -> Decision:
        return _run_plan(_pending_plan(self.start_charge(key, tokens)))

    def peek(self, key) -> Decision:
        return _run_plan(_pending_plan(self.start_peek(key)))

    async def reserve_async(self, key: str, estimate: int) -> Reservation:
        first = self.start_reserve(key, estimate)
        if first.done():
            first = first.result()
            if first:
                return first
            raise RateLimited(first.decision)
        return await _run_plan_async(_reserve_plan(self, key, estimate, first))


class TokenBudget(_core.TokenBudget):
    __doc__ = _core.TokenBudget.__doc__

    def __new__(cls, *args: Any, **options: Any) -> "TokenBudget":
        return super().__new__(_scoped_class(cls, options, _TokenBudgetInCluster))

    def __init__(self, windows, *, rule: Optional[str] = None, **options: Any) -> None:
        super().__init__(windows, **_redis_name("TokenBudget", rule, options))

    def reserve(self, key: str, estimate: int) -> Reservation:
        """Reserves `estimate` tokens or raises ``RateLimited``. Use it as a context manager:
        an exception inside the block cancels the reservation; settle the real usage inside it::

            with budget.reserve(tenant, estimate=1200) as r:
                reply = call_model()
                r.settle(reply.usage.total_tokens)
        """
        return _run_plan(_reserve_plan(self, key, estimate))

    async def reserve_async(self, key: str, estimate: int) -> Reservation:
        """``reserve`` for coroutines: in cluster scope, awaits Redis's reply (then settle with
        ``await reservation.settle_async(actual)``). Reserved at once, it returns without
        scheduling anything on the loop."""
        reservation = self.try_reserve(key, estimate)  # process and host scope decide at once
        if reservation:
            return reservation
        raise RateLimited(reservation.decision)


_core_pick = _core.Balancer.pick


class Balancer(_core.Balancer):
    __doc__ = _core.Balancer.__doc__

    def pick(self, body=None, *, model: str = "", affinity_key: str = "") -> Pick:
        """Picks an endpoint for a raw OpenAI-style body (``bytes`` or ``str``), or for a model
        name alone. Use the Pick as a context manager, or call ``pick.complete(...)``::

            with balancer.pick(body) as pick:
                reply = post(pick.label("url"), body)
                pick.complete(status=reply.status_code, ttft=reply.ttft, latency=reply.elapsed)
        """
        if isinstance(body, str):
            body = body.encode()
        # Keywords cost pybind11 ~0.3 us a call, and most picks pass none; anything else (a wrong
        # type included, for pybind11 to refuse) goes through them.
        if type(model) is str and type(affinity_key) is str and not model and not affinity_key:
            return _core_pick(self, body)
        return _core_pick(self, body, model=model, affinity_key=affinity_key)
