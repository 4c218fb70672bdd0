"""
sluice native core: admission objects (see the `sluice` package for the facade).
"""
from __future__ import annotations
import collections.abc
import typing
__all__: list[str] = ['Admission', 'Balancer', 'CacheKey', 'ChatMessage', 'Clock', 'ConcurrencyLimiter', 'Counter', 'Decision', 'EngineMetrics', 'FallbackCall', 'FallbackPolicy', 'Gauge', 'Governor', 'Histogram', 'LeakyBucket', 'LlmRequest', 'ManualClock', 'MetricsRegistry', 'PendingCount', 'PendingDecision', 'PendingPermit', 'PendingRenewal', 'PendingReservation', 'Permit', 'Pick', 'RateLimiter', 'RedisStore', 'Reservation', 'ResponseCache', 'SLIDING_MAX_LIMIT', 'TokenBudget', 'Usage', 'UsageReader', 'Window', 'cache_key', 'canonical_json', 'classify', 'coarse_steady_clock', 'completion_to_sse', 'estimate_prompt_tokens', 'estimate_text_tokens', 'include_usage_in_stream', 'parse_engine_metrics', 'parse_request', 'parse_retry_after', 'prefix_block_hashes', 'read_usage', 'remove_shared_region', 'sse_to_completion', 'status_table', 'steady_clock', 'tsc_clock', 'tsc_clock_status']
class Clock:
    """
    A monotonic time source. Every sluice object reads time through one; pass ``clock=None`` (the
    default) for the process's steady clock, or a ``ManualClock`` to drive time by hand in tests.
    """
    def now(self) -> float:
        """
        Seconds since the clock's origin.
        """
    def now_nanos(self) -> int:
        """
        Nanoseconds since the clock's origin.
        """
class ManualClock(Clock):
    """
    A clock that moves only when told to. Thread-safe.
    
        clock = sluice.ManualClock()
        limiter = sluice.RateLimiter([sluice.Window.per_second(1)], clock=clock)
        clock.advance(1.0)   # the next unit is due; nothing sleeps
    """
    def __init__(self, start: float = 0.0) -> None:
        """
        Starts at `start` seconds, in [0, 2^62 ns] (146 years).
        """
    def advance(self, seconds: float) -> None:
        """
        Moves the clock by `seconds` (negative moves it back); it stops at 0 and at 2^62 ns.
        """
    def advance_nanos(self, nanos: int) -> None:
        ...
    def set(self, seconds: float) -> None:
        """
        Sets the clock to `seconds` since its origin, in [0, 2^62 ns].
        """
class Window:
    """
    One rate: ``limit`` units per ``period`` seconds, of which up to ``burst`` (0 = ``limit``) may be
    taken at once. Over any interval of t seconds a key gets at most ``burst + floor(t * limit /
    period)`` units (GCRA); a request is refused only when admitting it would break that.
    """
    @staticmethod
    def per_day(limit: int, burst: int = 0) -> Window:
        ...
    @staticmethod
    def per_hour(limit: int, burst: int = 0) -> Window:
        ...
    @staticmethod
    def per_minute(limit: int, burst: int = 0) -> Window:
        ...
    @staticmethod
    def per_second(limit: int, burst: int = 0) -> Window:
        ...
    @staticmethod
    def sliding(limit: int, period: float) -> Window:
        """
        An exact sliding window: at most ``limit`` admissions in any interval of ``period``
        seconds (a log of the last ``limit`` admission times per key; limit at most
        SLIDING_MAX_LIMIT). RateLimiter only; every window of a limiter has the same kind.
        """
    def __init__(self, limit: int, period: float, burst: int = 0) -> None:
        ...
    def __repr__(self) -> str:
        ...
    @property
    def burst(self) -> int:
        ...
    @property
    def kind(self) -> str:
        """
        'gcra' (the default) or 'sliding'.
        """
    @property
    def limit(self) -> int:
        ...
    @property
    def period(self) -> float:
        ...
class Decision:
    """
    The answer of every admission object. Truthy when allowed. Durations are float seconds.
    """
    def __bool__(self) -> bool:
        ...
    def __repr__(self) -> str:
        ...
    def headers(self, ietf: bool = True, x_ratelimit: bool = True, retry_after: bool = True, policy_name: str = 'sluice') -> list[tuple[str, str]]:
        """
        HTTP headers for this decision as (name, value) pairs: RateLimit-Policy and RateLimit
        (IETF draft), X-RateLimit-Limit/-Remaining/-Reset, and Retry-After on refusals.
        """
    @property
    def allowed(self) -> bool:
        ...
    @property
    def delay(self) -> float:
        """
        LeakyBucket: seconds to wait before proceeding.
        """
    @property
    def delay_nanos(self) -> int:
        ...
    @property
    def limit(self) -> int:
        ...
    @property
    def remaining(self) -> int:
        ...
    @property
    def reset_after(self) -> float:
        """
        Seconds until the binding window is whole again.
        """
    @property
    def reset_after_nanos(self) -> int:
        ...
    @property
    def retry_after(self) -> float:
        """
        Refused: seconds until the same request could be allowed.
        """
    @property
    def retry_after_nanos(self) -> int:
        ...
    @property
    def window(self) -> float:
        """
        The binding window's period in seconds (0 if none).
        """
    @property
    def window_nanos(self) -> int:
        ...
class RedisStore:
    """
    One connection to Redis, owned by a native background thread and shared by the objects that keep
    their state in Redis (cluster scope). It connects on first use and reconnects by itself; while
    Redis is unreachable, decisions fail fast into each object's failure mode. Safe across fork().
    """
    @staticmethod
    @typing.overload
    def from_url(url: str, **kwargs) -> RedisStore:
        """
        A store from a connection URL: redis://[[user]:password@]host[:port][/db][?options],
        rediss:// (TLS), unix:///path?db=N, redis+sentinel://h1[:26379],h2/<service>[/db],
        redis+cluster://h1[:6379],h2, and rediss+sentinel / rediss+cluster (the grammar and
        its options: sluice/redis_store.h, RedisOptionsFromUrl). Keyword overrides take the
        constructor's names and win over the URL. Errors never show the password.
        """
    @staticmethod
    @typing.overload
    def from_url(*args, **kwargs) -> RedisStore:
        """
        Reached only by a url of the wrong type: raises TypeError naming it.
        """
    @typing.overload
    def __init__(self, host: str = '127.0.0.1', port: int = 6379, *, unix_socket: str | None = None, username: str | None = None, password: str | None = None, db: int = 0, connect_timeout: float = 0.2, command_timeout: float = 0.005, reconnect_interval: float = 0.1, key_prefix: str = 'sluice', tls: bool = False, tls_ca_file: str | None = None, tls_cert_file: str | None = None, tls_key_file: str | None = None, tls_server_name: str | None = None, tls_verify_peer: bool = True, sentinel_master: str | None = None, sentinels: typing.Any = None, sentinel_username: str | None = None, sentinel_password: str | None = None, cluster_nodes: typing.Any = None) -> None:
        """
        Standalone (host and port, or unix_socket), Sentinel (sentinel_master and sentinels)
        or Redis Cluster (cluster_nodes); sentinels and cluster_nodes are lists of
        'host:port' strings or (host, port) tuples (IPv6 hosts in [] in strings), or one
        'h:p,h:p' string. tls turns TLS on for every connection; tls_verify_peer=False
        accepts any certificate. See sluice/redis_store.h, RedisOptions.
        """
    @typing.overload
    def __init__(self, *args, **kwargs) -> None:
        """
        Reached only by arguments of the wrong type: raises TypeError naming the argument.
        """
    def check(self, timeout: float = 2.0) -> None:
        """
        Connects if need be and checks the server: the credentials, that it is a master (not
        a replica or a Sentinel), the database, that scripts may run and write sluice's keys.
        Raises sluice.PermissionDenied, sluice.FailedPrecondition, or sluice.Unavailable when
        Redis cannot be reached within `timeout` seconds. It waits (GIL released, but a gevent
        hub is blocked): call it at start-up.
        """
    def stats(self) -> dict:
        """
        Counters since creation: commands, pipelined, failures, fast_failures, connects,
        script_loads, config_errors (a wrong password, a replica, ...), retried (releases kept
        across an outage, or replayed to a new master after a failover, and sent again),
        undone (acquires whose caller gave up, released), dropped, redirected (Redis Cluster:
        commands sent again after MOVED or ASK), topology_changes (slot maps read again,
        Sentinel masters that changed); whether it is connected now, and the last
        configuration error ('' if none).
        """
class PendingDecision:
    """
    A decision under way (``RateLimiter.start``, ``LeakyBucket.start``). ``fileno()`` becomes readable
    when the reply is in (-1 when it was decided on the spot); ``result()`` then returns the Decision
    without waiting.
    """
    def done(self) -> bool:
        """
        True once result() returns without waiting.
        """
    def fileno(self) -> int:
        """
        Readable once the reply is in; -1 when it was decided on the spot.
        """
    def result(self) -> typing.Any:
        """
        The result. Blocks (GIL released) only if the reply is not in yet, at most the
        store's timeouts; a reply that never comes is decided by the failure mode.
        """
class RateLimiter:
    """
    Requests per key against one or several windows at once (GCRA). Thread-safe; never blocks.
    
    Scope: process (default); host with ``shared_region="name"``; cluster with ``redis=RedisStore(...)``
    and ``redis_name="name"`` (``mode="strict"``: one round trip per decision; ``mode="leased"``: local
    decisions from leases, overshoot at most limit * lease_ttl / period), and ``on_failure`` =
    "allow" | "deny" | "local" (limit / local_share) while Redis cannot answer.
    
        limiter = sluice.RateLimiter([sluice.Window.per_second(10, burst=20),
                                      sluice.Window.per_hour(1000)])
        if not limiter.allow(f"{tenant}:{app}"):
            ...  # 429
    
    A request passes only if every window has room; a refusal charges no window. Idle keys are
    dropped on their own; ``max_keys`` bounds the keys that are mid-window at once, and a *new* key
    beyond it raises ``sluice.CapacityError`` from ``try_acquire`` (``allow`` returns False).
    """
    def __init__(self, windows: collections.abc.Sequence[Window], *, max_keys: int = 1048576, clock: Clock = None, shared_region: str | None = None, redis: RedisStore = None, redis_name: str | None = None, on_failure: str = 'local', local_share: int | None = None, mode: str = 'strict', lease_units: int = 0, lease_ttl: float = 0.0) -> None:
        ...
    def allow(self, key: str, cost: int = 1) -> bool:
        """
        Takes `cost` units for `key` if every window has room. Returns whether it did (False
        also for a new key beyond max_keys). The fastest call; try_acquire returns the
        Decision behind the answer.
        """
    def allow_without_waiting(self, key: str, cost: int = 1) -> typing.Any:
        """
        allow() when it can decide without waiting for Redis (always outside cluster
        scope; in leased mode when this process's lease covers it); else None: use start().
        """
    def drop_idle_keys(self) -> int:
        """
        Drops every idle key now; returns how many.
        """
    def peek(self, key: str) -> Decision:
        """
        What `key` has left, without taking anything: `allowed` (would a request of cost 1
        pass now), `remaining`, and `retry_after` when it would not.
        """
    def start(self, key: str, cost: int = 1) -> typing.Any:
        """
        Starts a decision and returns a PendingDecision at once (cluster scope: the reply is on its way; wait for its fileno() to become readable, then call result()).
        """
    def start_peek(self, key: str) -> typing.Any:
        """
        As peek, returning a PendingDecision at once (see start).
        """
    def try_acquire(self, key: str, cost: int = 1) -> Decision:
        """
        Takes `cost` units for `key` if every window has room; returns the Decision (truthy
        when allowed; remaining, retry_after, ...). A new key beyond max_keys raises
        sluice.CapacityError; allow() is the yes/no fast path.
        """
    @property
    def cluster(self) -> bool:
        ...
    @property
    def failure_mode_decisions(self) -> int:
        ...
    @property
    def key_count(self) -> int:
        ...
    @property
    def lease_round_trips(self) -> int:
        ...
    @property
    def leased_local_decisions(self) -> int:
        ...
    @property
    def max_keys(self) -> int:
        ...
    @property
    def memory_bytes(self) -> int:
        ...
    @property
    def windows(self) -> list[Window]:
        ...
class LeakyBucket:
    """
    Shapes a burst into a steady rate: each call books a departure slot and says how long to wait.
    Thread-safe; the object itself never sleeps (``acquire`` in the facade sleeps cooperatively).
    
    Scope: process (default); host with ``shared_region="name"``; cluster with ``redis=RedisStore(...)``
    and ``redis_name="name"`` (one schedule for every host; strict mode), with ``on_failure`` as for
    RateLimiter.
    """
    def __init__(self, rate: int, per: float = 1.0, burst: int = 1, max_wait: float = 1.0, *, max_keys: int = 1048576, clock: Clock = None, shared_region: str | None = None, redis: RedisStore = None, redis_name: str | None = None, on_failure: str = 'local', local_share: int | None = None) -> None:
        ...
    def drop_idle_keys(self) -> int:
        ...
    def start(self, key: str, cost: int = 1) -> typing.Any:
        """
        As try_acquire, returning a PendingDecision at once (see RateLimiter.start).
        """
    def try_acquire(self, key: str, cost: int = 1) -> Decision:
        """
        Books `cost` units. Allowed: wait `delay` seconds, then go. Refused (the wait would
        exceed max_wait): nothing was booked; `retry_after` says when to ask again.
        """
    @property
    def burst(self) -> int:
        ...
    @property
    def cluster(self) -> bool:
        ...
    @property
    def failure_mode_decisions(self) -> int:
        ...
    @property
    def key_count(self) -> int:
        ...
    @property
    def max_wait(self) -> float:
        ...
    @property
    def per(self) -> float:
        ...
    @property
    def rate(self) -> int:
        ...
class PendingReservation:
    """
    A reservation under way (``TokenBudget.start_reserve``): wait for ``fileno()`` to be readable, then
    ``result()`` returns the Reservation without waiting.
    """
    def done(self) -> bool:
        """
        True once result() returns without waiting.
        """
    def fileno(self) -> int:
        """
        Readable once the reply is in; -1 when it was decided on the spot.
        """
    def result(self) -> typing.Any:
        """
        The result. Blocks (GIL released) only if the reply is not in yet, at most the
        store's timeouts; a reply that never comes is decided by the failure mode.
        """
class Reservation:
    """
    Tokens reserved before an LLM call. Truthy while pending. ``settle(actual)`` replaces the estimate
    with the real usage (refund or debt); ``cancel()`` refunds it all. As a context manager it cancels
    when the block raises and is still unsettled; otherwise an unsettled reservation stays charged as
    estimated.
    """
    def __bool__(self) -> bool:
        ...
    def __enter__(self) -> typing.Any:
        ...
    def __exit__(self, exc_type: typing.Any, exc: typing.Any, traceback: typing.Any) -> bool:
        ...
    def _start_settle(self, actual: int) -> typing.Any:
        """
        settle(), returning a PendingDecision at once (the facade waits cooperatively).
        """
    def cancel(self) -> None:
        """
        cancel(self: sluice._core.Reservation) -> None
        
        Refunds the whole estimate (the call never reached the provider).
        """
    def settle(self, actual: int) -> Decision:
        """
        settle(self: sluice._core.Reservation, actual: int) -> sluice._core.Decision
        
        Charges the real usage; returns the key's balance afterwards.
        """
    def settle_async(self, actual: int) -> Decision:
        """
        ``settle`` for coroutines: awaits Redis's reply in cluster scope.
        """
    @property
    def decision(self) -> Decision:
        ...
    @property
    def estimate(self) -> int:
        ...
    @property
    def pending(self) -> bool:
        ...
class TokenBudget:
    """
    LLM tokens per key over one or several windows: reserve an estimate before the call, settle the
    real usage after. A request whose estimate does not fit is refused before it starts; usage beyond
    the estimate is carried as debt. Thread-safe; never blocks.
    
    Scope: process (default); host with ``shared_region="name"``; cluster with ``redis=RedisStore(...)``
    and ``redis_name="name"`` (one budget for every host; strict mode), with ``on_failure`` as for
    RateLimiter.
    """
    def __init__(self, windows: collections.abc.Sequence[Window], *, max_keys: int = 1048576, clock: Clock = None, shared_region: str | None = None, redis: RedisStore = None, redis_name: str | None = None, on_failure: str = 'local', local_share: int | None = None) -> None:
        ...
    def charge(self, key: str, tokens: int) -> Decision:
        """
        Charges `tokens` after the fact (may put the key in debt); returns the balance.
        """
    def drop_idle_keys(self) -> int:
        ...
    def peek(self, key: str) -> Decision:
        """
        The key's balance (remaining may be negative: debt); `allowed` says whether one more
        token fits now, and `retry_after` when it would.
        """
    def start_charge(self, key: str, tokens: int) -> typing.Any:
        """
        As charge, returning a PendingDecision at once (a zero charge is a peek).
        """
    def start_peek(self, key: str) -> typing.Any:
        """
        As peek, returning a PendingDecision at once.
        """
    def start_reserve(self, key: str, estimate: int) -> typing.Any:
        """
        As try_reserve, returning a PendingReservation at once.
        """
    def try_reserve(self, key: str, estimate: int) -> typing.Any:
        """
        Reserves `estimate` tokens. The Reservation is falsy when refused; its decision says
        when to retry.
        """
    @property
    def cluster(self) -> bool:
        ...
    @property
    def failure_mode_decisions(self) -> int:
        ...
    @property
    def key_count(self) -> int:
        ...
    @property
    def windows(self) -> list[Window]:
        ...
class PendingCount:
    """
    A count under way (``ConcurrencyLimiter.start_in_flight``): wait for ``fileno()`` to be readable,
    then ``result()`` returns it without waiting.
    """
    def done(self) -> bool:
        """
        True once result() returns without waiting.
        """
    def fileno(self) -> int:
        """
        Readable once the reply is in; -1 when it was decided on the spot.
        """
    def result(self) -> typing.Any:
        """
        The result. Blocks (GIL released) only if the reply is not in yet, at most the
        store's timeouts; a reply that never comes is decided by the failure mode.
        """
class PendingPermit:
    """
    A permit under way (``ConcurrencyLimiter.start``): wait for ``fileno()`` to be readable, then
    ``result()`` returns the Permit without waiting.
    """
    def done(self) -> bool:
        """
        True once result() returns without waiting.
        """
    def fileno(self) -> int:
        """
        Readable once the reply is in; -1 when it was decided on the spot.
        """
    def result(self) -> typing.Any:
        """
        The result. Blocks (GIL released) only if the reply is not in yet, at most the
        store's timeouts; a reply that never comes is decided by the failure mode.
        """
class PendingRenewal:
    """
    A lease renewal under way (``Permit._start_renew``); ``Permit._finish_renew`` takes its outcome.
    """
    def done(self) -> bool:
        ...
    def fileno(self) -> int:
        ...
class Permit:
    """
    A slot of a ConcurrencyLimiter, and a lease: it is given back on ``release()``, when the ``with``
    block ends, or when the object is collected, and it is reclaimed by the limiter if its lease runs
    out first (renew long work with ``renew()``). Truthy while held.
    """
    def __bool__(self) -> bool:
        ...
    def __enter__(self) -> typing.Any:
        ...
    def __exit__(self, arg0: typing.Any, arg1: typing.Any, arg2: typing.Any) -> bool:
        ...
    def _finish_renew(self, pending: PendingRenewal) -> None:
        ...
    def _start_renew(self, lease: float | None = None) -> typing.Any:
        """
        renew(), split for waiting cooperatively on the returned PendingRenewal.
        """
    def release(self) -> bool:
        """
        Gives the slot back. False if the lease had already expired and the slot was
        reclaimed (the work overran its lease). Idempotent.
        """
    def renew(self, lease: float | None = None) -> None:
        """
        renew(self: sluice._core.Permit, lease: float | None = None) -> None
        
        Extends the lease to `lease` seconds from now (default: the limiter's lease).
        Raises sluice.LeaseExpired if the slot was already reclaimed.
        """
    def renew_async(self, lease: float | None = None) -> None:
        """
        ``renew`` for coroutines: awaits Redis's reply in cluster scope.
        """
    @property
    def decision(self) -> Decision:
        ...
    @property
    def expires_at(self) -> float:
        """
        When the lease ends, in seconds on the limiter's clock.
        """
    @property
    def held(self) -> bool:
        ...
class ConcurrencyLimiter:
    """
    At most ``max_in_flight`` permits per key at once. The check and the take are one atomic step, and
    every permit is a lease of ``lease`` seconds, so a crashed or forgotten holder cannot leak its
    slot. Thread-safe; ``try_acquire`` never blocks (``acquire`` in the facade waits cooperatively).
    
    Scope: process (default); host with ``shared_region="name"``; cluster with ``redis=RedisStore(...)``
    and ``redis_name="name"`` (leases in Redis, one cap for every host; strict mode), with ``on_failure`` as
    for RateLimiter (``"local"``: max_in_flight / local_share per process).
    """
    def __init__(self, max_in_flight: int, *, lease: float = 600.0, retry_after: float = 1.0, max_keys: int = 1048576, clock: Clock = None, shared_region: str | None = None, redis: RedisStore = None, redis_name: str | None = None, on_failure: str = 'local', local_share: int | None = None) -> None:
        ...
    def in_flight(self, key: str) -> int:
        """
        Permits held for `key`. Cluster scope: a round trip (-1 if Redis did not answer).
        """
    def reclaim_expired(self) -> int:
        ...
    def start(self, key: str) -> typing.Any:
        """
        As try_acquire, returning a PendingPermit at once (cluster scope: the Redis reply
        may still be on its way).
        """
    def start_in_flight(self, key: str) -> typing.Any:
        """
        As in_flight, returning a PendingCount at once.
        """
    def try_acquire(self, key: str) -> typing.Any:
        """
        Takes a slot for `key` if one is free. The Permit is falsy when refused; it keeps
        the limiter alive.
        """
    @property
    def cluster(self) -> bool:
        ...
    @property
    def failure_mode_decisions(self) -> int:
        ...
    @property
    def lease(self) -> float:
        ...
    @property
    def max_in_flight(self) -> int:
        ...
class ChatMessage:
    """
    One message of a parsed request: its role, and its content as text (text parts joined; other
    parts as their minified JSON).
    """
    def __repr__(self) -> str:
        ...
    @property
    def content(self) -> str:
        ...
    @property
    def role(self) -> str:
        ...
class LlmRequest:
    """
    What sluice reads from an OpenAI-style request body (``parse_request``).
    """
    @property
    def estimated_prompt_tokens(self) -> int:
        ...
    @property
    def messages(self) -> list[ChatMessage]:
        ...
    @property
    def model(self) -> str:
        ...
    @property
    def prompt_chars(self) -> int:
        ...
    @property
    def stream(self) -> bool:
        ...
class EngineMetrics:
    """
    A replica's load from its metrics text: waiting and running requests, KV-cache use (0..1);
    None for a series the text did not have.
    """
    @property
    def kv_usage(self) -> float | None:
        ...
    @property
    def running(self) -> float | None:
        ...
    @property
    def waiting(self) -> float | None:
        ...
class Pick:
    """
    A chosen endpoint, counted in flight until ``complete()``. As a context manager it completes as
    successful when the block ends normally and as abandoned when it raises (unless completed
    inside); a Pick collected without completion counts as abandoned.
    """
    def __enter__(self) -> typing.Any:
        ...
    def __exit__(self, arg0: typing.Any, arg1: typing.Any, arg2: typing.Any) -> bool:
        ...
    def complete(self, *, status: int = 0, error: str | None = None, ttft: float = 0.0, latency: float = 0.0, prompt_tokens: int = 0, completion_tokens: int = 0) -> None:
        """
        Reports how the request went: an HTTP status (429, 401/403 and 5xx are classified)
        or an error class, and the TTFT and latency in seconds (0: unknown). Only the first
        call counts.
        """
    def label(self, name: str) -> str:
        """
        The endpoint's label, or '' if it has none by that name.
        """
    @property
    def completed(self) -> bool:
        ...
    @property
    def endpoint_id(self) -> str:
        ...
    @property
    def labels(self) -> dict:
        ...
    @property
    def matched_blocks(self) -> int:
        """
        Leading prefix blocks the endpoint was believed to hold (prefix
        strategies): a multiple of 4, as the index keys groups of 4 blocks,
        or all of the request's blocks.
        """
class Balancer:
    """
    Picks one of N LLM endpoints per request (see include/sluice/balancer.h for every rule):
    strategy "round_robin", "weighted_round_robin", "least_request" (default), "prefix_affinity",
    "scored" (weights: prefix, queue, kv_cache, in_flight) or "consistent_hash". Cooldowns by error
    class (rate limited 60 s, auth and connection 10 s) make round robin over API keys a credential
    rotation. With ``shared_region="name"`` the in-flight counts are shared by every process of the
    host (Gunicorn workers balance together), and so are cooldowns, ejections, the round-robin
    cursor and, with a prefix strategy, the routes (every worker learns every worker's picks, so a
    conversation's next turn goes where its last went whichever worker picks it). With
    ``redis=RedisStore(...)`` and ``redis_name="fleet"`` cooldowns, ejections and (prefix
    strategies) routes are shared by every process of every host under that name (mirrored from
    Redis, read again at most every ``redis_refresh`` seconds, default 0.25; a pick never waits for
    Redis, and while Redis is down each process keeps its own). Thread-safe; a pick never blocks on
    I/O.
    """
    def __init__(self, strategy: str = 'least_request', *, block_chars: int = 128, max_blocks: int = 256, kv_capacity_blocks: int = 16384, imbalance_abs: int = 2, imbalance_rel: float = 1.5, hot_spot_sigmas: float = 2.0, weights: collections.abc.Mapping[str, float] = {}, metrics_max_age: float = 2.0, score_load_slack: float = 4.0, kv_session_half_life: float = 30.0, kv_full_usage: float = 0.9, load_bound: float = 1.25, virtual_nodes: int = 64, failures_before_cooldown: int = 1, cooldown_rate_limited: float = 60.0, cooldown_auth: float = 10.0, cooldown_connection: float = 10.0, cooldown_timeout: float = 0.0, cooldown_server: float = 0.0, ewma_weight: float = 0.2, seed: int = 0, clock: Clock = None, shared_region: str | None = None, shared_max_in_flight: int = 256, shared_lease: float = 600.0, redis: RedisStore = None, redis_name: str | None = None, redis_refresh: float = 0.25, min_shared_affinity_blocks: int = 16) -> None:
        ...
    def add_endpoint(self, id: str, *, weight: int = 1, max_concurrency: int = 0, kv_capacity_blocks: int = 0, labels: dict = {}) -> None:
        """
        Adds an endpoint. labels={'model': ...} restricts it to that model; other labels
        (provider, api_key, url) come back on the Pick.
        """
    def cooldown(self, id: str, seconds: float, *, reason: str | None = None) -> None:
        """
        Keeps the endpoint out of picks for `seconds` (0 < seconds <= 86400) from now, as after
        a failure of class `reason` (None: an administered cooldown). The later end wins: a
        shorter cooldown changes nothing (restore() first). With a shared_region, host-wide.
        Raises sluice.InvalidArgument naming the argument, sluice.NotFound for an unknown id.
        """
    def eject(self, id: str, seconds: float) -> None:
        """
        Ejects the endpoint for `seconds` (0 < seconds <= 86400), whatever the outlier
        ejection cap says (it counts towards the cap). With a shared_region, host-wide.
        """
    def endpoints(self) -> list:
        """
        A dict per endpoint: id, in_flight (this process's picks), host_in_flight (every
        process's, with a shared_region), fleet_in_flight (and other hosts', as last read,
        with redis=), picks, completions, errors, EWMAs, prefix_blocks,
        metrics; cooldown_until and ejected_until (seconds on the balancer's clock, None when
        not held; host-wide with a shared_region), cooldown_remaining and ejected_remaining
        (seconds, 0.0 when not held), cooldown_reason (a failure class name, None for an
        administered cooldown without one), times_ejected, last_failure and last_failure_at
        (this process's last failed completion: class name and clock seconds, or None).
        """
    def pick(self, body: bytes | None = None, *, model: str = '', affinity_key: str = '') -> typing.Any:
        """
        Picks an endpoint for a raw request body (bytes: parsed, its model and prefix used),
        or for a model name alone. Raises sluice.NotFound (no endpoint serves the model),
        sluice.CapacityError (all at max_concurrency) or sluice.Error (all cooling down).
        """
    def pick_parsed(self, request: LlmRequest, *, affinity_key: str = '') -> typing.Any:
        """
        pick() for a request already parsed with parse_request().
        """
    def remove_endpoint(self, id: str) -> None:
        """
        Removes an endpoint; its picks in flight complete normally.
        """
    def restore(self, id: str) -> None:
        """
        Ends the endpoint's cooldown and ejection now (host-wide with a shared_region), and
        its runs of consecutive failures. Raises sluice.NotFound for an unknown id.
        """
    def update_endpoint(self, id: str, *, weight: int = 1, max_concurrency: int = 0, kv_capacity_blocks: int = 0, labels: dict = {}) -> None:
        """
        Replaces an endpoint's settings, keeping its counters and prefix index.
        """
    def update_metrics(self, id: str, text: str) -> None:
        """
        Feeds the endpoint's scraped Prometheus text (vLLM or SGLang).
        """
class FallbackCall:
    """
    One call's walk through a FallbackPolicy's chain (see FallbackPolicy.begin). While ``kind`` is
    "attempt", wait ``delay`` seconds, send to ``target`` (``endpoint_id`` for a balanced target)
    within ``timeout``, and report with ``next(...)``. Functions run by ``FallbackPolicy.call`` and
    ``stream`` receive it as their ``attempt`` (``sluice.Attempt``): they read ``target``, ``model``,
    ``endpoint_id``, ``labels``, ``timeout``, ``number``, ``retry``. Used by one thread (or greenlet)
    at a time.
    """
    def _next_delay(self) -> float:
        """
        The facade's fast path: the delay before the attempt, or -1 when the call ended.
        """
    def _succeed(self) -> None:
        """
        The facade's fast path: the attempt succeeded.
        """
    def mark_first_byte(self) -> None:
        """
        Streaming: the attempt's first byte reached the client; no fallback from now on.
        """
    def next(self, status: int = 0, *, transport: str | None = None, error_body: bytes = b'', retry_after: float = 0.0, latency: float = 0.0, ttft: float = 0.0) -> FallbackCall:
        """
        Reports the attempt: an HTTP status (0 when no response came) or a transport error
        ('connect', 'timeout', 'reset'), the provider's error body (bytes), its Retry-After
        (seconds), and the latency and TTFT in seconds (0: measured / unknown). Returns self,
        moved to its next step.
        """
    @property
    def attempt(self) -> int:
        ...
    @property
    def code(self) -> int:
        """
        The absl status code of ``status`` (sluice.status_table() maps it to
        its exception): 0 ok, 2 in progress.
        """
    @property
    def delay(self) -> float:
        ...
    @property
    def endpoint_id(self) -> str:
        ...
    @property
    def failure(self) -> typing.Any:
        """
        The previous attempt's failure class, or None.
        """
    @property
    def first_byte_marked(self) -> bool:
        ...
    @property
    def kind(self) -> str:
        """
        'attempt', 'succeeded' or 'failed'.
        """
    @property
    def labels(self) -> dict:
        """
        The picked endpoint's labels (balanced targets); {} otherwise.
        """
    @property
    def message(self) -> str:
        ...
    @property
    def model(self) -> str:
        ...
    @property
    def number(self) -> int:
        """
        The same as ``attempt``: 1 for the call's first attempt, 2 next, ...
        """
    @property
    def retry(self) -> bool:
        ...
    @property
    def retry_after(self) -> float:
        """
        After an 'unavailable' failure: seconds until a target is usable.
        """
    @property
    def status(self) -> str:
        """
        'ok', 'in_progress', 'unavailable', 'deadline_exceeded', 'fatal' or
        'stream_broken'.
        """
    @property
    def target(self) -> str:
        ...
    @property
    def target_index(self) -> int:
        ...
    @property
    def timeout(self) -> float | None:
        """
        Seconds the attempt may take after its delay; None: unbounded.
        """
class FallbackPolicy:
    """
    An ordered chain of targets with a circuit breaker each, a shared retry budget, full-jitter
    backoff honouring Retry-After, and a deadline per call (include/sluice/fallback_policy.h has
    every rule). Thread-safe; nothing in it blocks. Use the ``sluice.FallbackPolicy`` facade's
    ``call`` / ``call_async`` / ``stream`` / ``stream_async`` helpers, or drive ``begin()`` yourself.
    """
    def __init__(self, targets: list, *, max_retries_per_target: int = 1, deadline: float = 120.0, attempt_timeout: float = 0.0, backoff_base: float = 0.025, backoff_max: float = 0.25, retry_budget_ratio: float = 0.2, retry_budget_min: int = 3, context_length_target: str | None = None, breaker: dict | None = None, actions: collections.abc.Mapping[str, str] = {}, clock: typing.Any = None) -> None:
        ...
    def _drain_transitions(self) -> list:
        ...
    def begin(self, deadline: float = 0.0) -> FallbackCall:
        """
        Starts a call (deadline 0: the policy's); its first step is ready.
        """
    def targets(self) -> list:
        """
        A dict per target: name, state ('closed', 'open', 'half_open'), attempts,
        successes, failures, skipped, trips, window_calls, window_failures,
        rate_limited_until.
        """
    @property
    def calls_in_flight(self) -> int:
        ...
    @property
    def retries_in_flight(self) -> int:
        ...
    @property
    def retries_refused(self) -> int:
        ...
class _Fetch:
    """
    ResponseCache._fetch's result (see sluice/single_flight.h).
    """
    def _result(self) -> _Fetch:
        ...
    def abandon(self) -> None:
        ...
    def append(self, chunk: bytes) -> None:
        ...
    def complete(self, answer: typing.Any, *, ttl: float = 0.0, store: bool = True) -> bool:
        ...
    def complete_stream(self, *, ttl: float = 0.0, store: bool = True) -> bool:
        ...
    def fileno(self) -> int:
        ...
    def ready(self) -> bool:
        ...
    def take_chunks(self) -> list:
        ...
    @property
    def hit(self) -> typing.Any:
        ...
    @property
    def is_broken(self) -> bool:
        ...
    @property
    def is_lead(self) -> bool:
        ...
class CacheKey:
    """
    A request's cache key (``sluice.cache_key``): ``digest`` (32 hex digits of XXH3-128) and
    ``canonical`` (the namespace, 0x1F, and the RFC 8785 form of the request: what a hit is verified
    against). Equal keys mean the same question.
    """
    def __eq__(self, arg0: CacheKey) -> bool:
        ...
    def __hash__(self) -> int:
        ...
    def __repr__(self) -> str:
        ...
    @property
    def canonical(self) -> bytes:
        ...
    @property
    def digest(self) -> str:
        ...
class ResponseCache:
    """
    LLM answers in process memory under their cache keys, within ``max_bytes`` (keys, answers and a
    fixed overhead per entry): sharded, per-entry TTL, W-TinyLFU with a window sized by miniature
    caches (an LRU on recency-heavy traffic, frequency-filtered on Zipf traffic), hits verified against the canonical bytes (include/sluice/response_cache.h). With
    ``redis=RedisStore(...)``, a Redis tier behind it, shared by every process using the same
    ``redis_name``: writes go to both; a miss here asks Redis (in get_or_fetch / stream_or_fetch,
    cooperatively) before anyone calls upstream; Redis down only costs misses (``redis_errors``).
    Thread-safe; never blocks on I/O.
    """
    def __init__(self, *, max_bytes: int = 268435456, shards: int = 16, default_ttl: float = 3600.0, protected_share: float = 0.8, admission: bool = True, store_tool_calls: bool = True, redis: RedisStore = None, redis_name: str = 'cache', clock: Clock = None) -> None:
        ...
    def _fetch(self, key: CacheKey) -> typing.Any:
        """
        A lookup that merges identical concurrent misses; see get_or_fetch.
        """
    def erase(self, key: CacheKey) -> bool:
        """
        Removes the key's entry.
        """
    def get(self, key: CacheKey) -> typing.Any:
        """
        The stored answer: bytes (a whole body), a list of bytes (the SSE chunks of a streamed
        answer), or None.
        """
    def put(self, key: CacheKey, answer: typing.Any, *, ttl: float = 0.0) -> bool:
        """
        Stores an answer (bytes, or an iterable of bytes chunks for a streamed one) for ``ttl``
        seconds (0: default_ttl). False when it was not stored: larger than a shard, or
        turned away at once by the admission filter in favour of more popular answers (an
        answer larger than the window); a stored answer may still be turned away when the
        window pushes it out (stats()['rejected']).
        """
    def stats(self) -> dict:
        """
        hits, misses, inserts, rejected, evictions, expirations, collisions, merged_waits,
        leader_failovers, skipped_tool_calls, redis_hits, redis_misses, redis_writes,
        redis_errors, entries, bytes.
        """
class Usage:
    """
    The token usage of one answer, as its provider reported it (``sluice.UsageReader``,
    ``sluice.read_usage``). ``prompt_tokens`` includes cached ones, ``completion_tokens`` reasoning
    ones; ``total_tokens`` is the reported total or their sum; ``reported`` names the counts the
    provider gave (the others read 0).
    """
    def __repr__(self) -> str:
        ...
    @property
    def cache_creation_tokens(self) -> int:
        ...
    @property
    def cached_tokens(self) -> int:
        ...
    @property
    def completion_tokens(self) -> int:
        ...
    @property
    def prompt_tokens(self) -> int:
        ...
    @property
    def provider(self) -> str:
        ...
    @property
    def reasoning_tokens(self) -> int:
        ...
    @property
    def reported(self) -> tuple:
        ...
    @property
    def total_tokens(self) -> int:
        ...
class UsageReader:
    """
    Reads the token usage of a provider's answer as it streams: ``feed(chunk)`` the bytes as they
    arrive, cut anywhere (SSE events split mid-line, mid-JSON, mid-UTF-8), then ``finish()`` gives
    the ``Usage``, or None when the answer reported none (an OpenAI stream without
    ``stream_options.include_usage``: see ``include_usage_in_stream``). ``provider``: 'auto'
    (detected), 'openai_chat', 'openai_completions', 'openai_responses', 'anthropic', 'gemini',
    'dashscope'. Memory is bounded by ``max_event_bytes`` per unfinished event.
    """
    def __init__(self, provider: str = 'auto', *, max_event_bytes: int = 1048576) -> None:
        ...
    def feed(self, chunk: bytes) -> None:
        """
        Reads the next bytes of the answer (any chunking).
        """
    def finish(self) -> typing.Any:
        """
        Ends the answer: its Usage, or None when it reported no usage. Again: the same.
        """
    @property
    def stats(self) -> dict:
        ...
class Admission:
    """
    One request's admission by a Governor: whether it may go (``allowed``, truthy), the binding
    rule's ``decision`` and ``headers()``, the shaping ``delay``, the response cache
    (``cached_answer`` / ``store_answer``), the fallback call for its model (``begin_call``), and
    ``settle(usage)``. It holds the request's concurrency permits and token reservations:
    ``release()``, the end of a ``with`` block or collection gives the permits back (unsettled
    reservations stay charged as estimated); ``cancel()`` gives the tokens back too.
    """
    def __bool__(self) -> bool:
        ...
    def __enter__(self) -> typing.Any:
        ...
    def __exit__(self, arg0: typing.Any, arg1: typing.Any, arg2: typing.Any) -> bool:
        ...
    def begin_call(self, deadline: float = 0.0) -> FallbackCall:
        """
        The fallback call for the request's model (a sluice.FallbackCall); NotFound when
        the policy has no chain for it.
        """
    def cached_answer(self) -> typing.Any:
        """
        The cached answer (bytes, or a list of bytes chunks for a stream), or None.
        """
    def cancel(self) -> None:
        """
        The call never reached a provider: tokens back, permits released.
        """
    def headers(self) -> list[tuple[str, str]]:
        """
        The binding decision as HTTP headers: RateLimit-Policy, RateLimit, X-RateLimit-*,
        and Retry-After on refusals, as (name, value) pairs.
        """
    def release(self) -> None:
        """
        Releases the permits (unsettled reservations stay charged as estimated).
        """
    def settle(self, usage: typing.Any) -> None:
        """
        Settles the token reservations with the call's usage (a sluice.Usage: its
        total_tokens, or an int) and releases the permits. Only the first call counts.
        """
    def store_answer(self, answer: typing.Any) -> bool:
        """
        Stores the answer (bytes, or a list of bytes chunks) under this request's key, in
        its namespace; False when not stored (no cache, refused, a body that is not JSON).
        """
    @property
    def allowed(self) -> bool:
        ...
    @property
    def decision(self) -> Decision:
        ...
    @property
    def delay(self) -> float:
        """
        Seconds to wait before sending (shaping); 0 without a shaping rule.
        """
    @property
    def matched_rules(self) -> list[str]:
        ...
    @property
    def rule(self) -> str:
        """
        The binding rule's name ('' when no rule matched).
        """
    @property
    def token_estimate(self) -> int:
        ...
class Governor:
    """
    Runs a sluice policy (YAML or JSON; docs/policy.md): every rule's limiters, the upstream
    balancers, the fallback chains and the response cache, with one ``admit`` per request. Give the
    policy's text, or ``path=`` a file; with neither, the file named by $SLUICE_CONFIG. Thread-safe.
    """
    def __init__(self, policy: str | None = None, *, path: str | None = None, source: str = '<string>', clock: typing.Any = None) -> None:
        ...
    def admit(self, attributes: dict | None = None, *, headers: dict | None = None, ip: str | None = None, body: typing.Any | None = None, token_estimate: int = -1) -> Admission:
        """
        Decides a request against every rule that matches (see sluice.Governor). `attributes`:
        tenant, app, api_key, end_user, model, provider, route or your own; `headers` are
        matched as header.<lower-case name>; `ip` is the client's address; `body` the
        request's JSON (cache key, token estimate). Raises for a Redis configuration error
        or a full key table; a refusal is a falsy Admission. Waits for Redis in cluster scope
        (the facade runs it off the event loop then).
        """
    def clear_key_limits(self, rule: str, key: str) -> None:
        """
        Clears what set_key_limits gave one key of `rule`: the policy's limits apply again.
        """
    def metrics_text(self) -> str:
        """
        Prometheus text exposition of every object the Governor owns.
        """
    def reload(self, policy: str | None = None, *, path: str | None = None, source: str = '<string>') -> None:
        """
        Swaps in a new policy; unchanged rules keep their state. An invalid policy raises
        and the running one stays.
        """
    def set_key_limits(self, rule: str, key: str, *, requests: collections.abc.Sequence[Window] = [], tokens: collections.abc.Sequence[Window] = [], concurrency: int = 0) -> None:
        """
        Sets one key's limits of `rule` in this process (plans, per-app caps).
        """
    @property
    def rule_names(self) -> list[str]:
        """
        The running policy's rule names, in policy order.
        """
    @property
    def waits_for_redis(self) -> bool:
        """
        Whether a rule is in cluster scope, so admit may wait for Redis.
        """
class Counter:
    """
    A monotonic count of a MetricsRegistry (``registry.counter(...)``). ``add(n)`` is one atomic
    add; a counter of a series that did not fit the registry (``bool(counter)`` is False) ignores
    it.
    """
    def __bool__(self) -> bool:
        ...
    def add(self, n: int = 1) -> None:
        """
        Adds n (>= 0; wraps after 2**63 - 1).
        """
    @property
    def value(self) -> int:
        ...
class Gauge:
    """
    A value that goes up and down (``registry.gauge(...)``). In host scope it is one value for the
    whole host: ``add`` from every process sums, ``set`` sets it for all.
    """
    def __bool__(self) -> bool:
        ...
    def add(self, n: int) -> None:
        """
        Adds n (negative to subtract).
        """
    def set(self, value: int) -> None:
        """
        Sets the value.
        """
    @property
    def value(self) -> int:
        ...
class Histogram:
    """
    Observations counted in fixed buckets (``registry.histogram(...)``), with their sum.
    ``observe(v)`` counts v in the first bucket whose bound is >= v; NaN is ignored.
    """
    def __bool__(self) -> bool:
        ...
    def observe(self, value: float) -> None:
        """
        Counts value, in the unit of the bounds (seconds by default).
        """
    @property
    def count(self) -> int:
        ...
    @property
    def sum(self) -> float:
        ...
class MetricsRegistry:
    """
    Counters, gauges and histograms rendered in the Prometheus text format (``render()``). With
    ``shared_region``, the series live in /dev/shm and every process that opens the same name adds
    into them: any one worker renders the host's totals. At most ``max_series`` series; a new one
    beyond (or beyond the string space) gets a handle that ignores updates and is counted in
    sluice_metrics_dropped_series_total. Register it with prometheus_client through
    ``sluice.PrometheusCollector(registry)``.
    """
    def __init__(self, shared_region: str = '', max_series: int = 4096) -> None:
        ...
    def counter(self, name: str, help: str, labels: dict | None = None) -> Counter:
        """
        The counter of series name{labels} (a dict of str to str), made on first use.
        """
    def gauge(self, name: str, help: str, labels: dict | None = None) -> Gauge:
        """
        The gauge of series name{labels}, made on first use.
        """
    def histogram(self, name: str, help: str, labels: dict | None = None, bounds: collections.abc.Sequence[float] | None = None) -> Histogram:
        """
        The histogram of series name{labels}: bounds are increasing finite upper bounds
        (+Inf added); None: 100 ns to 10 ms in seconds.
        """
    def render(self) -> str:
        """
        The Prometheus text exposition (format 0.0.4) of every series.
        """
    @property
    def dropped_series(self) -> int:
        ...
    @property
    def memory_bytes(self) -> int:
        ...
    @property
    def series_count(self) -> int:
        ...
def _deliver_log_messages() -> None:
    """
    Hands queued log messages to `logging` now (they are delivered on their own soon after
    they are logged; tests use this to wait for none).
    """
def _raise_status(code: int, message: str) -> None:
    """
    Raises what a C++ call failing with absl code `code` raises (tests the translator).
    """
def cache_key(body: bytes, namespace: str = '', *, exclude: collections.abc.Sequence[str] | None = None) -> CacheKey:
    """
    The cache key of an OpenAI-style request body (bytes): RFC 8785 canonical JSON without
    the fields that do not decide the answer (``exclude``; default user, stream,
    stream_options, metadata, store, request_id, timeout, service_tier, cache), prefixed by
    ``namespace``, hashed with XXH3-128. Raises sluice.InvalidArgument naming the JSON error.
    """
def canonical_json(json: bytes) -> bytes:
    """
    The RFC 8785 (JCS) canonical form of a JSON text (bytes).
    """
def classify(status: int = 0, *, transport: str | None = None, error_body: bytes = b'') -> typing.Any:
    """
    The failure class of an attempt's outcome (None for a success): 'connect', 'timeout',
    'reset', 'rate_limited', 'server', 'auth', 'context_length', 'content_filter' or
    'client'. error_body (bytes) is the provider's error JSON.
    """
def coarse_steady_clock() -> Clock:
    """
    A cheaper steady clock that moves once per kernel tick (1-4 ms).
    """
def completion_to_sse(completion: bytes) -> list:
    """
    A chat.completion JSON (bytes) as the SSE events of a streamed answer (a list of bytes,
    each 'data: {...}\\n\\n', ending with [DONE]). Raises sluice.InvalidArgument, or
    sluice.Error for a tool-call answer (not converted).
    """
def estimate_prompt_tokens(request_body: bytes, *, tokens_per_message: int = 3, tokens_per_request: int = 3, tokens_per_image: int = 765, cjk_chars_per_token: float = 1.2, scale: float = 1.0) -> int:
    """
    A cheap estimate of a chat request's prompt tokens (bytes), for TokenBudget.reserve
    before the call (within about 9% of o200k_base for 90% of requests; docs/usage.md).
    """
def estimate_text_tokens(text: str, *, tokens_per_message: int = 3, tokens_per_request: int = 3, tokens_per_image: int = 765, cjk_chars_per_token: float = 1.2, scale: float = 1.0) -> int:
    """
    The same estimate for plain text (str).
    """
def include_usage_in_stream(request_body: bytes) -> bytes:
    """
    An OpenAI-style request body (bytes) that streams, with stream_options.include_usage set
    so the answer reports its usage; other bodies unchanged. Raises sluice.InvalidArgument.
    """
def parse_engine_metrics(text: str) -> EngineMetrics:
    """
    Reads queue depth, running requests and KV-cache use from vLLM / SGLang Prometheus
    text. Raises sluice.InvalidArgument naming the line at fault.
    """
def parse_request(body: bytes) -> LlmRequest:
    """
    Parses an OpenAI-style chat or completion body (bytes). Raises sluice.InvalidArgument
    naming the field at fault.
    """
def parse_retry_after(value: str) -> float | None:
    """
    A Retry-After header value ('120', '1.5' or an HTTP-date) in seconds from now; None if
    it is malformed.
    """
def prefix_block_hashes(request: LlmRequest, block_chars: int = 128, max_blocks: int = 256) -> list[int]:
    """
    The request's chained XXH3 block hashes, as the Balancer's prefix index sees them.
    """
def read_usage(body: bytes, provider: str = 'auto') -> typing.Any:
    """
    The usage of a whole answer (bytes: a JSON body or a whole SSE stream), or None when it
    reported none.
    """
def remove_shared_region(name: str) -> None:
    """
    Removes a host-scope shared-memory region (processes using it keep their mapping).
    Raises sluice.NotFound if there is none by that name.
    """
def sse_to_completion(chunks: collections.abc.Sequence[str]) -> bytes:
    """
    The SSE events of a streamed answer (a list of bytes) as one chat.completion JSON.
    """
def status_table() -> list:
    """
    The one table of how sluice reports an error in each language
    (sluice/internal/status_table.h): (absl code, its name, C code, C name, Python class in
    sluice._errors or None for OK), a tuple per code. Codes not listed raise sluice.Error.
    """
def steady_clock() -> Clock:
    """
    The process-wide steady clock (the default).
    """
def tsc_clock() -> Clock:
    """
    The CPU timestamp counter calibrated on CLOCK_MONOTONIC: as fine as steady_clock() and
    cheaper to read, on the same timeline (it may share a host-scope region with processes
    on steady_clock(), to within microseconds). The first call calibrates for about 4 ms.
    Where the counter is absent or unreliable it reads CLOCK_MONOTONIC:
    tsc_clock_status() says which.
    """
def tsc_clock_status() -> dict:
    """
    How tsc_clock() reads time: {'uses_tsc': bool, 'reason': str (why not; '' when it does),
    'ticks_per_second': float, 'last_offset_nanos': int (CLOCK_MONOTONIC minus the clock at the
    last re-anchoring), 'max_half_bracket_nanos': int, 'anchors': int}.
    """
SLIDING_MAX_LIMIT: int = 1000
__version__: str = '0.1.0'
