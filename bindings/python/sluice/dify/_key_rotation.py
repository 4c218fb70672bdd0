"""Dify's API-key rotation (``core.model_manager.LBModelManager``) on a sluice Balancer.

Dify keeps, per (tenant, provider, model type, model), a round-robin cursor (``INCR
model_lb_index:...``) and one cooldown key per load-balancing config (``SETEX ...:{config_id}``)
in Redis, so every worker shares them; its console reads a cooldown's TTL
(``get_config_in_cooldown_and_ttl``). ``LBModelManager`` here keeps that interface and backs it
with one ``sluice.Balancer`` per tuple whose endpoints are the config ids (qualified by a
digest of the tuple):

* scope "host" (the default): every tuple's Balancer has ``shared_region=<region_prefix>``, one
  pair of regions for the host (about 8.9 MB, at most 4096 configs), so cooldowns, ejections and
  in-flight counts are shared by every process of the host (Gunicorn and Celery workers), with
  no Redis round trip; scope "process": each process
  alone (tests, a single worker); scope "cluster": host scope, plus cooldowns and ejections
  shared by every host through Redis (the Balancer's ``redis=``: one hash per tuple, mirrored by
  each process and read again when older than ``redis_refresh``, 0.25 s by default; a pick never
  waits for Redis, and while Redis is down each host keeps its own cooldowns), so a key cooled
  down after a 429 on one host is skipped by the whole fleet and the console of any host shows
  its remaining time.
* the strategy is least request (power of two choices on the host-wide in-flight counts), not
  Dify's shared round-robin cursor: a shared cursor needs a shared counter per pick, while held
  picks already tell every worker which keys are busy, so keys spread across workers without
  one. ``configure_key_rotation(strategy="round_robin")`` gives round robin: host-wide in host
  scope (one cursor per tuple), fleet-wide in cluster scope (a Redis counter per tuple), per
  process in process scope.
* ``invoke_with_key_rotation`` is Dify's ``_round_robin_invoke`` (60 s after a rate limit, 10 s
  after an auth or connection error, then the next key; other errors raised at once), reporting
  every attempt to its Pick, so the cooldowns are the Balancer's own failure cooldowns (set to
  Dify's values) and the pick is held, and counted in flight, while the call (or its stream)
  runs. Unlike Dify it peeks a stream's first chunk before returning it, so a stream refused
  with a 429 before any output still moves to the next key.

Differences from Dify worth knowing: a cooldown only lengthens (the later end wins; Dify's SETEX
replaces a 60 s cooldown with a 10 s one); the console's TTL is rounded up (a held key never
shows 0 s); an empty config list gives None instead of Dify's ZeroDivisionError.
"""

from __future__ import annotations

import functools
import hashlib
import math
import os
import re
import sys
import threading
from typing import Any, Callable, Dict, Iterator, List, Mapping, NamedTuple, Optional, Tuple

from .._errors import Error, FailedPrecondition, InvalidArgument
from ._args import checked_id
from ._errors import AUTH_COOLDOWN, CONNECTION_COOLDOWN, RATE_LIMIT_COOLDOWN, classify_invoke_error

SCOPES = ("process", "host", "cluster")
STRATEGIES = ("least_request", "round_robin")
DEFAULT_REGION_PREFIX = "sluice-dify-lb"
#: The Balancer's limit on a shared_region name.
MAX_REGION_CHARS = 190
_DIGEST_CHARS = 32
#: Configs per manager (a host region holds 4096 distinct ids in its lifetime).
MAX_CONFIGS = 1024
#: The longest cooldown (the Balancer's one day).
MAX_COOLDOWN = 86400.0
_REGION_CHARS = re.compile(r"[A-Za-z0-9._-]+")
# The "model" label of the configs managers pick among, and of ids only a console asked about.
_ACTIVE = "dify-lb"
_OBSERVED = "dify-lb-observed"
_INHERIT = "__inherit__"


class NoKeyAvailable(FailedPrecondition):
    """Every config of the manager is cooling down (or it has none) and no attempt was made.
    Inside a Dify, the patched ``_round_robin_invoke`` raises Dify's ProviderTokenNotInitError
    from it, as Dify does."""


#: How stale a cluster-scope mirror of Redis's cooldowns may get (seconds).
DEFAULT_REDIS_REFRESH = 0.25
# The Redis name of a tuple's cooldowns is this, a dot and the tuple's tag: the same on every
# host whatever its region_prefix (the store's key_prefix keeps deployments apart).
REDIS_NAME_PREFIX = "dify-lb"


class _Settings(NamedTuple):
    scope: str
    region_prefix: str
    clock: Any
    strategy: str
    redis: Any
    redis_refresh: float


_settings = _Settings("host", DEFAULT_REGION_PREFIX, None, "least_request", None,
                      DEFAULT_REDIS_REFRESH)
_pools: Dict[Tuple[str, str, str, str], "_Pool"] = {}
_pools_lock = threading.Lock()


def configure_key_rotation(scope: str = "host", *, region_prefix: str = DEFAULT_REGION_PREFIX,
                           clock: Any = None, strategy: str = "least_request", redis: Any = None,
                           redis_refresh: float = DEFAULT_REDIS_REFRESH) -> Dict[str, Any]:
    """Where LBModelManagers made from now on keep their state; returns the previous settings
    (as keyword arguments, to restore them). `scope`: "host" (shared by every process of the
    host through shared memory), "cluster" (host scope, plus cooldowns shared by every host
    through `redis`, a sluice.RedisStore; None: the Redis Dify uses, from its REDIS_* settings,
    see redis_store_from_dify) or "process". `region_prefix`: the start of each tuple's region
    name ([A-Za-z0-9._-], at most 190 characters; in Redis a tuple's cooldowns are named by the
    tuple alone, so hosts with different prefixes share them). `clock`: a sluice.Clock for the Balancers (a ManualClock only in process scope:
    shared times need a steady clock). `strategy`: "least_request" or "round_robin".
    `redis_refresh` (cluster scope): how stale, in seconds, a process's copy of the fleet's
    cooldowns may get (0.001 to 60). Forgets the Balancers made so far (managers already made
    keep theirs)."""
    global _settings
    from .. import Clock, ManualClock, RedisStore
    owner = "configure_key_rotation"
    if scope not in SCOPES:
        raise InvalidArgument(f"sluice.dify.{owner}: scope must be process, host or cluster, got "
                              f"{scope!r}")
    if redis is not None and not isinstance(redis, RedisStore):
        raise TypeError(f"sluice.dify.{owner}: redis must be a sluice.RedisStore or None, got "
                        f"{type(redis).__name__}")
    if redis is not None and scope != "cluster":
        raise InvalidArgument(f"sluice.dify.{owner}: redis applies only in cluster scope, got "
                              f"scope {scope!r}")
    if isinstance(redis_refresh, bool) or not isinstance(redis_refresh, (int, float)) or \
            not math.isfinite(redis_refresh) or not 0.001 <= redis_refresh <= 60:
        raise InvalidArgument(f"sluice.dify.{owner}: redis_refresh must be a number of seconds "
                              f"in [0.001, 60], got {redis_refresh!r}")
    if not isinstance(region_prefix, str):
        raise TypeError(f"sluice.dify.{owner}: region_prefix must be a str, got "
                        f"{type(region_prefix).__name__}")
    longest = MAX_REGION_CHARS
    if not _REGION_CHARS.fullmatch(region_prefix) or len(region_prefix) > longest:
        raise InvalidArgument(f"sluice.dify.{owner}: region_prefix must be 1 to {longest} "
                              f"characters of [A-Za-z0-9._-], got {region_prefix[:80]!r}")
    if clock is not None and not isinstance(clock, Clock):
        raise TypeError(f"sluice.dify.{owner}: clock must be a sluice.Clock or None, got "
                        f"{type(clock).__name__}")
    if scope != "process" and isinstance(clock, ManualClock):
        raise InvalidArgument(f"sluice.dify.{owner}: clock must be a steady clock in {scope} "
                              "scope (a ManualClock is not shared between processes), got "
                              "ManualClock")
    if strategy not in STRATEGIES:
        raise InvalidArgument(f"sluice.dify.{owner}: strategy must be least_request or "
                              f"round_robin, got {strategy!r}")
    if scope == "cluster" and redis is None:
        from ._redis import redis_store_from_dify
        redis = redis_store_from_dify()  # its errors name the Dify setting
    with _pools_lock:
        previous = _settings._asdict()
        _settings = _Settings(scope, region_prefix, clock, strategy, redis, float(redis_refresh))
        _pools.clear()
    return previous


def key_rotation_settings() -> Dict[str, Any]:
    """The current settings, as configure_key_rotation's keyword arguments."""
    return _settings._asdict()


def tuple_tag(tenant_id: str, provider: str, model_type: str, model: str) -> str:
    """32 hex digits of BLAKE2b over the four length-prefixed UTF-8 strings: what makes a config's
    endpoint id unique among every tuple's (Dify's ``__inherit__`` config has the same id in all)."""
    digest = hashlib.blake2b(digest_size=_DIGEST_CHARS // 2)
    for part in (tenant_id, provider, model_type, model):
        data = part.encode("utf-8")
        digest.update(len(data).to_bytes(8, "big"))
        digest.update(data)
    return digest.hexdigest()


# Host scope: every tuple's Balancer shares ONE pair of regions (named by the prefix), keyed by
# tuple-qualified endpoint ids, so /dev/shm holds a fixed ~8.9 MB however many tenants and models
# rotate keys (a pair per tuple took 34 MB each: Docker's 64 MiB /dev/shm held one). The
# regions count at most 4096 configs host-wide, and 64 picks in flight per config (beyond that a
# pick still goes out, counted only in its own process).
SHARED_IN_FLIGHT_PER_KEY = 64


class _Pool:
    """One tuple's Balancer and the labels of its endpoints."""

    def __init__(self, key: Tuple[str, str, str, str], settings: _Settings) -> None:
        from .. import Balancer
        options: Dict[str, Any] = dict(
            strategy=settings.strategy, failures_before_cooldown=1,
            cooldown_rate_limited=RATE_LIMIT_COOLDOWN, cooldown_auth=AUTH_COOLDOWN,
            cooldown_connection=CONNECTION_COOLDOWN, cooldown_timeout=0.0, cooldown_server=0.0)
        if settings.clock is not None:
            options["clock"] = settings.clock
        self.tag = tuple_tag(*key)
        if settings.scope in ("host", "cluster"):
            options["shared_region"] = settings.region_prefix
            options["shared_max_in_flight"] = SHARED_IN_FLIGHT_PER_KEY
        if settings.scope == "cluster":
            # A hash per tuple: each Balancer reads only its own tuple's cooldowns.
            options.update(redis=settings.redis, redis_refresh=settings.redis_refresh,
                           redis_name=f"{REDIS_NAME_PREFIX}.{self.tag}")
        self.balancer = Balancer(**options)
        self.labels: Dict[str, str] = {}
        self.lock = threading.Lock()

    def endpoint(self, config_id: str) -> str:
        """The Balancer's endpoint id of a config: unique across tuples (see tuple_tag)."""
        return f"{self.tag}/{config_id}"

    def _label(self, config_id: str, label: str) -> None:
        if config_id not in self.labels:
            self.balancer.add_endpoint(self.endpoint(config_id), labels={"model": label})
        elif self.labels[config_id] != label:
            self.balancer.update_endpoint(self.endpoint(config_id), labels={"model": label})
        self.labels[config_id] = label

    def activate(self, ids: List[str]) -> None:
        """`ids` are the configs picks choose among (the newest manager's list)."""
        with self.lock:
            wanted = set(ids)
            for config_id in ids:
                if self.labels.get(config_id) != _ACTIVE:
                    self._label(config_id, _ACTIVE)
            for config_id, label in list(self.labels.items()):
                if label == _ACTIVE and config_id not in wanted:
                    self._label(config_id, _OBSERVED)

    def known(self, config_id: str) -> None:
        """Makes `config_id` an endpoint (observed only, if new) so that its holds can be read
        and set."""
        with self.lock:
            if config_id not in self.labels:
                self._label(config_id, _OBSERVED)

    def remaining(self, config_id: str) -> float:
        """Seconds until the config may be picked again (cooldown or ejection), 0.0 if now."""
        self.known(config_id)
        endpoint_id = self.endpoint(config_id)
        for endpoint in self.balancer.endpoints():
            if endpoint["id"] == endpoint_id:
                return max(endpoint["cooldown_remaining"], endpoint["ejected_remaining"])
        return 0.0


def _pool(key: Tuple[str, str, str, str]) -> _Pool:
    with _pools_lock:
        pool = _pools.get(key)
        if pool is None:
            pool = _pools[key] = _Pool(key, _settings)
        return pool


def _forget_pools_after_fork() -> None:
    # A forked child makes its own Balancers (host scope: on the same regions, so nothing shared
    # is lost); the parent's objects are not used across a fork.
    global _pools_lock
    _pools_lock = threading.Lock()
    _pools.clear()


os.register_at_fork(after_in_child=_forget_pools_after_fork)


def _model_type_value(owner: str, model_type: Any) -> str:
    """Dify's ModelType (a str enum: its value) or a str."""
    value = model_type if isinstance(model_type, str) else getattr(model_type, "value", None)
    if not isinstance(value, str):
        raise TypeError(f"sluice.dify.{owner}: model_type must be a str or Dify's ModelType, "
                        f"got {type(model_type).__name__}")
    return checked_id(owner, "model_type", value)


def _checked_configs(configs: Any, managed_credentials: Any) -> List[Any]:
    owner = "LBModelManager"
    if isinstance(configs, (str, bytes, Mapping)) or not hasattr(configs, "__iter__"):
        raise TypeError(f"sluice.dify.{owner}: load_balancing_configs must be a list of Dify's "
                        f"ModelLoadBalancingConfiguration, got {type(configs).__name__}")
    if managed_credentials is not None and not isinstance(managed_credentials, Mapping):
        raise TypeError(f"sluice.dify.{owner}: managed_credentials must be a dict or None, got "
                        f"{type(managed_credentials).__name__}")
    kept, seen = [], set()
    for index, config in enumerate(configs):
        if index >= MAX_CONFIGS:
            raise InvalidArgument(f"sluice.dify.{owner}: load_balancing_configs must hold at "
                                  f"most {MAX_CONFIGS} configs")
        name = f"load_balancing_configs[{index}].id"
        config_id = checked_id(owner, name, getattr(config, "id", None))
        if config_id in seen:
            raise InvalidArgument(f"sluice.dify.{owner}: {name} repeats {config_id[:80]!r}")
        seen.add(config_id)
        if getattr(config, "name", None) == _INHERIT:
            # As Dify: the provider's own credentials stand in, or the config is left out.
            if not managed_credentials:
                continue
            config.credentials = managed_credentials
        kept.append(config)
    return kept


def _checked_expire(owner: str, expire: Any) -> float:
    if isinstance(expire, bool) or not isinstance(expire, (int, float)):
        raise TypeError(f"sluice.dify.{owner}: expire must be a number of seconds, got "
                        f"{type(expire).__name__}")
    if not math.isfinite(expire) or expire <= 0 or expire > MAX_COOLDOWN:
        raise InvalidArgument(f"sluice.dify.{owner}: expire must be a number of seconds in "
                              f"(0, {MAX_COOLDOWN:.0f}], got {expire}")
    return float(expire)


def _ttl(remaining: float) -> Tuple[bool, int]:
    # Whole seconds, rounded up: a held config never shows 0.
    return (True, max(1, math.ceil(remaining))) if remaining > 0 else (False, 0)


class LBModelManager:
    """Dify's ``core.model_manager.LBModelManager``: picks the next load-balancing config (API
    key) of a (tenant, provider, model type, model) not in cooldown, and cools configs down, on a
    sluice Balancer shared per tuple (host scope: by every process of the host). Thread-safe.

    ``load_balancing_configs`` are Dify's ModelLoadBalancingConfiguration (``id``, ``name``,
    ``credentials``); a config named ``__inherit__`` takes `managed_credentials`, or is left out
    without them (as Dify does)."""

    def __init__(self, tenant_id: str, provider: str, model_type: Any, model: str,
                 load_balancing_configs: Any, managed_credentials: Optional[dict] = None) -> None:
        owner = "LBModelManager"
        self._tenant_id = checked_id(owner, "tenant_id", tenant_id)
        self._provider = checked_id(owner, "provider", provider)
        self._model_type = model_type
        type_value = _model_type_value(owner, model_type)
        self._model = checked_id(owner, "model", model)
        self._load_balancing_configs = _checked_configs(load_balancing_configs,
                                                        managed_credentials)
        self._by_id = {c.id: c for c in self._load_balancing_configs}
        self._pool = _pool((self._tenant_id, self._provider, type_value, self._model))
        self._by_endpoint = {self._pool.endpoint(c.id): c for c in self._load_balancing_configs}
        self._pool.activate(list(self._by_id))

    @property
    def balancer(self) -> Any:
        """The sluice.Balancer of this tuple (shared with every manager of it in the process)."""
        return self._pool.balancer

    def pick_next(self) -> Optional[Tuple[Any, Any]]:
        """(config, Pick) of the next config, the Pick held (counted in flight) until completed;
        None when every config is cooling down. ``invoke_with_key_rotation`` uses it."""
        if not self._by_id:
            return None
        # A newer manager of the tuple may have other configs: a pick outside ours is skipped.
        for _ in range(2 * len(self._by_id) + 8):
            try:
                pick = self._pool.balancer.pick(model=_ACTIVE)
            except Error:  # all cooling down (Unavailable), or none of ours active (NotFound)
                return None
            config = self._by_endpoint.get(pick.endpoint_id)
            if config is not None:
                return config, pick
            pick.complete()
        return None

    def fetch_next(self) -> Optional[Any]:
        """Dify's fetch_next: the next config not in cooldown, or None when all are cooling
        down. The pick is not held (Dify's caller reports failures with ``cooldown``)."""
        chosen = self.pick_next()
        if chosen is None:
            return None
        config, pick = chosen
        pick.complete()
        return config

    def _id_of(self, owner: str, config: Any) -> str:
        return checked_id(owner, "config.id", getattr(config, "id", None))

    def cooldown(self, config: Any, expire: float = 60) -> None:
        """Dify's cooldown: keeps `config` out of picks for `expire` seconds (0 < expire <=
        86400), in every process of the scope. A shorter cooldown than the one running changes
        nothing (``restore`` first)."""
        owner = "LBModelManager.cooldown"
        config_id = self._id_of(owner, config)
        seconds = _checked_expire(owner, expire)
        self._pool.known(config_id)
        self._pool.balancer.cooldown(self._pool.endpoint(config_id), seconds)

    def in_cooldown(self, config: Any) -> bool:
        """Dify's in_cooldown: whether `config` is cooling down (or ejected)."""
        return self._pool.remaining(self._id_of("LBModelManager.in_cooldown", config)) > 0

    def restore(self, config: Any) -> None:
        """Ends `config`'s cooldown now, in every process of the scope (no Dify counterpart:
        Dify's cooldowns can only expire)."""
        config_id = self._id_of("LBModelManager.restore", config)
        self._pool.known(config_id)
        self._pool.balancer.restore(self._pool.endpoint(config_id))

    @staticmethod
    def get_config_in_cooldown_and_ttl(tenant_id: str, provider: str, model_type: Any,
                                       model: str, config_id: str) -> Tuple[bool, int]:
        """Dify's console call: (True, seconds left rounded up) for a config cooling down,
        else (False, 0). In host scope it sees the cooldowns of every process of the host; in
        cluster scope those of every host (as of its last read of Redis, at most
        ``redis_refresh`` old: a read is started when it is older)."""
        owner = "LBModelManager.get_config_in_cooldown_and_ttl"
        key = (checked_id(owner, "tenant_id", tenant_id), checked_id(owner, "provider", provider),
               _model_type_value(owner, model_type), checked_id(owner, "model", model))
        return _ttl(_pool(key).remaining(checked_id(owner, "config_id", config_id)))


def _is_stream(result: Any) -> bool:
    # Dify's stream is a generator of chunks; a blocking answer (LLMResult) is no iterator.
    return hasattr(result, "__next__")


def _close(chunks: Any) -> None:
    close = getattr(chunks, "close", None)
    if close is not None:
        close()


def _complete_failed(pick: Any, exc: BaseException) -> Any:
    """Reports the attempt's failure to its pick (a Dify invoke error by its class, anything
    else as abandoned: not the key's fault); returns the InvokeFailure or None."""
    failure = classify_invoke_error(exc) if isinstance(exc, Exception) else None
    pick.complete(error=failure.kind if failure is not None else "abandoned")
    return failure


def _held_stream(pick: Any, first: Any, chunks: Iterator[Any]) -> Iterator[Any]:
    """The stream from its peeked first chunk on, holding `pick` until it ends; a failure after
    the first chunk is reported to the pick (and cools the key) and propagates."""
    try:
        yield first
        for chunk in chunks:
            yield chunk
    except GeneratorExit:  # the client went away
        pick.complete(error="abandoned")
        raise
    except BaseException as exc:
        _complete_failed(pick, exc)
        raise
    finally:
        try:
            _close(chunks)
        finally:
            pick.complete()  # only the first completion counts


def _empty() -> Iterator[Any]:
    return
    yield  # pragma: no cover


def invoke_with_key_rotation(manager: LBModelManager, call: Callable[[Any], Any], *,
                             stream: bool) -> Any:
    """Dify's ``_round_robin_invoke``: ``call(config)`` with the next config of `manager`; on
    InvokeRateLimitError the config cools 60 s, on InvokeAuthorizationError /
    InvokeConnectionError 10 s (the Balancer's failure cooldowns, reported through the Pick),
    and the next config is tried; any other error is raised at once. When every config has
    failed, the last error is raised; NoKeyAvailable when none could be tried. With `stream`,
    the first chunk is read before the stream is returned, so a failure before it moves on too;
    after it, failures propagate (the config still cools down). The Pick is held while the call
    or its stream runs (host scope: counted in flight for every worker)."""
    if not isinstance(manager, LBModelManager):
        raise TypeError(f"sluice.dify.invoke_with_key_rotation: manager must be a "
                        f"sluice.dify.LBModelManager, got {type(manager).__name__}")
    if not callable(call):
        raise TypeError(f"sluice.dify.invoke_with_key_rotation: call must be callable, got "
                        f"{type(call).__name__}")
    if not isinstance(stream, bool):
        raise TypeError(f"sluice.dify.invoke_with_key_rotation: stream must be a bool, got "
                        f"{type(stream).__name__}")
    last: Optional[BaseException] = None
    # Each failed config is cooled, so it is not picked again within this call.
    for _ in range(len(manager._by_id)):
        chosen = manager.pick_next()
        if chosen is None:
            break
        config, pick = chosen
        chunks = None
        try:
            result = call(config)
            if stream and _is_stream(result):
                chunks = iter(result)
                try:
                    first = next(chunks)
                except StopIteration:
                    pick.complete()
                    return _empty()
                return _held_stream(pick, first, chunks)
        except Exception as exc:
            if chunks is not None:
                _close(chunks)
            failure = _complete_failed(pick, exc)
            if failure is None or not failure.rotates:
                raise
            last = exc
            continue
        except BaseException:
            pick.complete(error="abandoned")
            raise
        pick.complete()
        return result
    if last is not None:
        raise last
    raise NoKeyAvailable(f"sluice.dify.invoke_with_key_rotation: no config of "
                         f"{manager._provider}/{manager._model} is available: every one is "
                         "cooling down")


# ---- the patch of ModelInstance._round_robin_invoke -----------------------------------------

ERRORS_MODULE = "core.errors.error"


def rotating_method(original: Callable[..., Any]) -> Callable[..., Any]:
    """A replacement for Dify's ``ModelInstance._round_robin_invoke(function, *args, **kwargs)``:
    with a sluice LBModelManager, ``invoke_with_key_rotation`` (``stream=`` from the call's
    ``stream`` keyword); otherwise Dify's own."""

    @functools.wraps(original)
    def _round_robin_invoke(self: Any, function: Callable[..., Any], *args: Any,
                            **kwargs: Any) -> Any:
        manager = getattr(self, "load_balancing_manager", None)
        if not isinstance(manager, LBModelManager):
            return original(self, function, *args, **kwargs)
        kwargs.pop("credentials", None)

        def call(config: Any) -> Any:
            return function(*args, **kwargs, credentials=config.credentials)

        try:
            return invoke_with_key_rotation(manager, call, stream=kwargs.get("stream") is True)
        except NoKeyAvailable as exc:
            dify_error = getattr(sys.modules.get(ERRORS_MODULE), "ProviderTokenNotInitError",
                                 None)
            if isinstance(dify_error, type) and issubclass(dify_error, BaseException):
                raise dify_error("Model credentials is not initialized.") from exc
            raise

    _round_robin_invoke.__sluice_original__ = original  # type: ignore[attr-defined]
    return _round_robin_invoke
