"""sluice.dify: Dify's limits governed in-process by sluice.

One call, early in every Dify process (the app factory, a Gunicorn ``post_fork`` hook; in a Celery
worker ``install_in_celery_worker()``, which runs it under any pool; see docs/dify.md)::

    import sluice.dify
    sluice.dify.install()                       # host scope: every worker of this host
    sluice.dify.install(sluice.dify.policy("cluster", redis_url="redis://redis:6379/3"))
    sluice.dify.install(model_calls=sluice.Governor(path="/etc/sluice/dify-models.yaml"))
    sluice.dify.install(model_calls=governor, fallbacks={
        ("openai", "gpt-4o"): [("anthropic", "claude-3-5-sonnet-20241022")]})

It swaps Dify's classes for these, which keep Dify's interfaces:

    RateLimit, RateLimitGenerator, rate_limit_context
                        the per-app concurrency cap (core/app/features/rate_limiting), atomic,
                        leased, nested enters counted once, streams held until they end
    hold_run, handover_limiter, install_in_celery_worker
                        a streaming workflow / advanced-chat run executed in Celery
                        (tasks/app_generate/workflow_execute_task.py) holds its request's slot
                        until the run ends, also after the client went away: the API process
                        hands the slot over to the run (install patches AppExecutionParams.new
                        and the task's apply_async and run; see _celery_runs)
    AttemptLimiter      libs/helper.py's RateLimiter: never more than N attempts in any window

and, with ``model_calls=``, governs the model call:

    governed_invoke_llm, governed_method, model_call_scope, ModelRateLimited, PydanticCodec
                        ModelInstance.invoke_llm through a Governor: token estimate reserved and
                        settled with LLMUsage, response cache by tenant and app, refusals as
                        Dify's InvokeRateLimitError, streams held until they end; Dify's stream
                        converter reports the refusals as 429 events
    ModelFallbacks, ModelUnavailable, fallback_outcome
                        provider fallback: per primary (provider, model), ordered alternatives
                        tried through a FallbackPolicy (a breaker per target, retry budget) when
                        the primary fails with a rate limit, connection or server error; a
                        stream fails over until its first chunk; install(fallbacks=...)

and gives the pieces an integration needs:

    GovernorMiddleware, FlaskGovernor, RequestReader
                        route-level rules (route, header, API key, client ip) in front of any
                        WSGI / Flask app, Dify's 429 answer, responses held until closed, /metrics
    is_refusal, stream_error_data, converter_method
                        a sluice refusal inside an SSE stream as a 429 event

    LBModelManager, invoke_with_key_rotation, configure_key_rotation, NoKeyAvailable
                        Dify's key rotation (core.model_manager.LBModelManager and
                        _round_robin_invoke) on a sluice Balancer per (tenant, provider, model
                        type, model): cooldowns and in-flight counts shared by every worker of
                        the host, least request across keys, a stream's 429 before its first
                        chunk moved to the next key; install(key_rotation=...) swaps them in

    classify_invoke_error, invoke_outcome, InvokeFailure
                        Dify's Invoke*Error classes in sluice's failure vocabulary
    too_many_requests, rate_limit_error, quota_exceeded_response, stream_error_event, sse,
    limit_headers       Dify's 429 bodies with Retry-After and RateLimit headers
    policy, app_concurrency_rule, AppConcurrency, configure
                        the Governor rule behind the app cap, and its scope

install() refuses (``DifyNotSupported``, naming Dify's version and the missing symbols) a Dify
whose modules it does not know; ``uninstall()`` puts Dify's classes back.
"""

from __future__ import annotations

from typing import Any, Optional

from ._app_concurrency import (AppConcurrency, AppInvokeQuotaExceededError, RateLimit,
                               RateLimitGenerator, backend, configure, quota_message,
                               rate_limit_context)
from ._celery_runs import handover_limiter, hold_run, install_in_celery_worker
from ._attempts import AttemptLimiter, configure_defaults as configure_attempt_limiters
from ._errors import (AUTH_COOLDOWN, CONNECTION_COOLDOWN, RATE_LIMIT_COOLDOWN, InvokeFailure,
                      classify_invoke_error, invoke_outcome)
from ._fallbacks import ModelFallbacks, ModelUnavailable, checked_fallbacks, fallback_outcome
from ._install import TARGETS, DifyNotSupported, installed, read_dify_version
from ._redis import policy_store_fields, redis_store_from_dify, redis_store_keywords
from ._install import MODEL_MANAGER_MODULE, CONVERTER_MODULE, WORKFLOW_TASK_MODULE
from ._install import patch as _patch
from ._install import patch_attribute as _patch_attribute
from ._install import patch_later as _patch_later
from ._install import read_symbol as _read_symbol
from ._key_rotation import (LBModelManager, NoKeyAvailable, configure_key_rotation,
                            invoke_with_key_rotation, key_rotation_settings, rotating_method)
from ._install import patch_everywhere as _patch_everywhere
from ._invoke import (ModelRateLimited, PydanticCodec, governed_invoke_llm, governed_method,
                      model_call_scope, usage_tokens)
from ._stream_errors import converter_method, is_refusal, stream_error_data
from ._install import unpatch as _unpatch
from ._policy import (DEFAULT_CEILING, DEFAULT_COMMAND_TIMEOUT, RULE, app_concurrency_rule,
                      policy)
from ._web import (MAX_HEADERS, MAX_VALUE_CHARS, FlaskGovernor, GovernorMiddleware,
                   RequestReader)
from ._responses import (RATE_LIMIT_ERROR, TOO_MANY_REQUESTS, limit_headers,
                         quota_exceeded_response, rate_limit_error, sse, stream_error_event,
                         too_many_requests)

__all__ = [
    "AUTH_COOLDOWN",
    "AppConcurrency",
    "AppInvokeQuotaExceededError",
    "AttemptLimiter",
    "CONNECTION_COOLDOWN",
    "DifyNotSupported",
    "FlaskGovernor",
    "GovernorMiddleware",
    "InvokeFailure",
    "LBModelManager",
    "ModelFallbacks",
    "MAX_HEADERS",
    "MAX_VALUE_CHARS",
    "ModelRateLimited",
    "ModelUnavailable",
    "NoKeyAvailable",
    "PydanticCodec",
    "RATE_LIMIT_COOLDOWN",
    "RATE_LIMIT_ERROR",
    "RULE",
    "RateLimit",
    "RateLimitGenerator",
    "RequestReader",
    "TARGETS",
    "TOO_MANY_REQUESTS",
    "app_concurrency_rule",
    "backend",
    "classify_invoke_error",
    "configure",
    "configure_attempt_limiters",
    "configure_key_rotation",
    "converter_method",
    "fallback_outcome",
    "governed_invoke_llm",
    "governed_method",
    "handover_limiter",
    "hold_run",
    "install",
    "install_in_celery_worker",
    "installed",
    "invoke_outcome",
    "invoke_with_key_rotation",
    "is_refusal",
    "key_rotation_settings",
    "limit_headers",
    "model_call_scope",
    "policy",
    "quota_exceeded_response",
    "quota_message",
    "rate_limit_context",
    "rate_limit_error",
    "read_dify_version",
    "policy_store_fields",
    "redis_store_from_dify",
    "redis_store_keywords",
    "sse",
    "stream_error_data",
    "stream_error_event",
    "too_many_requests",
    "uninstall",
    "usage_tokens",
]

_restore: Optional[tuple] = None


def _handover_of(policy_text: str) -> Any:
    """The handover marks for a policy written by ``policy()`` (JSON with the app rule), in its
    rule's scope; None for another policy or process scope."""
    import json
    try:
        document = json.loads(policy_text)
        rule = next(r for r in document["rules"] if r.get("name") == RULE)
        scope, name = rule["scope"], document["name"]
        lease = float(str(rule["lease"]).rstrip("s"))
    except (ValueError, KeyError, TypeError, StopIteration, AttributeError):
        return None
    if scope == "host":
        return handover_limiter("host", name=name, lease=lease)
    if scope == "cluster":
        from .. import RedisStore
        store = next((s for s in document.get("stores", []) if s.get("name") == rule.get("store")),
                     None)
        # A mark is read once per run handed over: the app rule's patience, not the store's
        # 5 ms default (an unanswered read only keeps a slot counted twice for a moment).
        timeout = {"command_timeout": DEFAULT_COMMAND_TIMEOUT}
        redis = RedisStore.from_url(store["url"], **timeout) if store and store.get("url") \
            else redis_store_from_dify(**timeout)
        return handover_limiter("cluster", name=name, lease=lease, redis=redis)
    return None


def _app_concurrency_of(governor_or_policy: Any) -> AppConcurrency:
    from .. import Governor
    if isinstance(governor_or_policy, AppConcurrency):
        return governor_or_policy
    if governor_or_policy is None:
        text = policy("host")
        return AppConcurrency(Governor(text), ceiling=DEFAULT_CEILING,
                              handover=_handover_of(text))
    if isinstance(governor_or_policy, str):
        return AppConcurrency(Governor(governor_or_policy, source="sluice.dify policy"),
                              handover=_handover_of(governor_or_policy))
    if isinstance(governor_or_policy, Governor):
        return AppConcurrency(governor_or_policy)
    raise TypeError("sluice.dify.install: governor_or_policy must be None, a policy's text, a "
                    f"sluice.Governor or a sluice.dify.AppConcurrency, got "
                    f"{type(governor_or_policy).__name__}")


def install(governor_or_policy: Any = None, *, dify_version: Optional[str] = None,
            attempt_scope: str = "host", redis: Any = None, model_calls: Any = None,
            key_rotation: Any = None, fallbacks: Any = None, celery_runs: Any = None) -> str:
    """Patches the Dify of this process and returns its version.

    `governor_or_policy`: None (the host-scope ``policy()``), a policy's text, a sluice.Governor
    whose policy has the ``app_concurrency_rule()`` rule, or an AppConcurrency. `dify_version`
    overrides the version read from Dify (for messages). `attempt_scope` ("process", "host" or
    "cluster" with `redis`, a sluice.RedisStore; None: the Redis Dify uses, from its REDIS_*
    settings, see redis_store_from_dify) is where AttemptLimiters made from now on keep their
    logs. `key_rotation` ("host", "cluster" (cooldowns shared by every host through `redis`, or
    the Redis of Dify's REDIS_* settings) or "process"; None leaves Dify's own, in Redis) swaps
    Dify's LBModelManager and ModelInstance._round_robin_invoke for sluice.dify's (see
    configure_key_rotation). `fallbacks` (a ModelFallbacks, or a mapping of chains made into one
    with Dify's ModelManager as its factory; needs `model_calls`) names the alternatives of a
    failing (provider, model) (see ModelFallbacks). `celery_runs`: whether streaming workflow / advanced-chat runs
    executed in Celery hold their request's slot until they end (see hold_run): None (default)
    does it when this Dify has ``tasks.app_generate.workflow_execute_task`` and the app cap has
    handover marks (a policy of ``policy()`` in host or cluster scope; an AppConcurrency given
    with ``handover=``); True requires it; False leaves Dify's task alone; a
    sluice.ConcurrencyLimiter (``handover_limiter(...)``) gives the marks. Install it alike in
    the API processes and in the Celery workers (``install_in_celery_worker``). Raises
    DifyNotSupported, before changing anything, when a symbol is missing.
    """
    if dify_version is not None and not isinstance(dify_version, str):
        raise TypeError(f"sluice.dify.install: dify_version must be a str, got "
                        f"{type(dify_version).__name__}")
    if attempt_scope not in ("process", "host", "cluster"):
        raise ValueError(f"sluice.dify.install: attempt_scope must be process, host or cluster, "
                         f"got {attempt_scope!r}")
    if key_rotation not in (None, "process", "host", "cluster"):
        raise ValueError(f"sluice.dify.install: key_rotation must be None, process, host or "
                         f"cluster, got {key_rotation!r}")
    if (attempt_scope == "cluster" or key_rotation == "cluster") and redis is None:
        # The Redis Dify itself uses, from its REDIS_* settings (standalone, Sentinel, Cluster,
        # TLS); its errors name the setting.
        redis = redis_store_from_dify()
    from .. import ConcurrencyLimiter, Governor, ManualClock
    if model_calls is not None and not isinstance(model_calls, Governor):
        raise TypeError(f"sluice.dify.install: model_calls must be a sluice.Governor or None, got "
                        f"{type(model_calls).__name__}")
    fallbacks = checked_fallbacks("install", fallbacks)
    if fallbacks is not None and model_calls is None:
        raise ValueError("sluice.dify.install: fallbacks needs model_calls (each attempt is "
                         "governed by that Governor), got model_calls=None")
    app_concurrency = _app_concurrency_of(governor_or_policy)
    if isinstance(celery_runs, ConcurrencyLimiter):
        app_concurrency.handover = celery_runs
    elif celery_runs not in (None, True, False):
        raise TypeError(f"sluice.dify.install: celery_runs must be None, a bool or a "
                        f"sluice.ConcurrencyLimiter, got {type(celery_runs).__name__}")
    elif celery_runs is True and app_concurrency.handover is None:
        raise ValueError("sluice.dify.install: celery_runs=True needs handover marks shared "
                         "with the Celery workers: a host- or cluster-scope policy() or "
                         "celery_runs=sluice.dify.handover_limiter(...), got none")
    hold_celery_runs = app_concurrency.handover is not None and (
        celery_runs is True or isinstance(celery_runs, ConcurrencyLimiter) or
        (celery_runs is None and _has_module(WORKFLOW_TASK_MODULE)))
    model_instance = f"{MODEL_MANAGER_MODULE}.ModelInstance"
    lb_manager = f"{MODEL_MANAGER_MODULE}.LBModelManager"
    celery_task = f"{WORKFLOW_TASK_MODULE}.workflow_based_app_execution_task"
    run_params = f"{WORKFLOW_TASK_MODULE}.AppExecutionParams"
    require = ((model_instance,) if model_calls is not None or key_rotation else ()) + \
        ((lb_manager,) if key_rotation else ()) + \
        ((celery_task, run_params) if hold_celery_runs else ())

    def configure_all() -> None:
        global _restore
        if model_calls is not None:
            import inspect
            cls = _read_symbol(model_instance)
            _patch_attribute(cls, "invoke_llm", governed_method(cls.invoke_llm, model_calls,
                                                                fallbacks=fallbacks))
            converter = _read_symbol(f"{CONVERTER_MODULE}.AppGenerateResponseConverter")
            if converter is not None:
                _patch_attribute(converter, "_error_to_stream_response", converter_method(
                    inspect.getattr_static(converter, "_error_to_stream_response")))
        previous_rotation = None
        if key_rotation:
            cls = _read_symbol(model_instance)
            if not callable(getattr(cls, "_round_robin_invoke", None)):
                raise DifyNotSupported(dify_version or read_dify_version(),
                                       [f"{model_instance}._round_robin_invoke"])
            _patch_attribute(cls, "_round_robin_invoke",
                             rotating_method(cls._round_robin_invoke))
            _patch_everywhere(lb_manager, LBModelManager)
            settings = key_rotation_settings()
            settings["scope"] = key_rotation
            settings["redis"] = redis if key_rotation == "cluster" else None
            if key_rotation != "process" and isinstance(settings["clock"], ManualClock):
                settings["clock"] = None  # a process-scope ManualClock cannot be shared
            previous_rotation = configure_key_rotation(**settings)
        if hold_celery_runs:
            _hold_celery_runs(_read_symbol(celery_task), _read_symbol(run_params),
                              dify_version or read_dify_version())
        _restore = (configure(app_concurrency),
                    configure_attempt_limiters(attempt_scope, redis=redis), previous_rotation)

    return _patch(dify_version, _self(), configure_all, require=require)


def _has_module(name: str) -> bool:
    import importlib.util
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def _hold_celery_runs(task: Any, params: Any, version: str) -> None:
    """Patches Dify's Celery task and its AppExecutionParams for the handover (_celery_runs).
    The task is patched where Celery keeps it, the instance in the app's registry (its proxy
    forwards attributes to it): the worker calls that instance's ``run`` (Dify's FlaskTask.
    __call__ calls ``self.run``), ``delay`` its ``apply_async``. Before Dify's Celery app is
    made, that instance is patched when the app is."""
    import inspect
    from . import _celery_runs
    new = inspect.getattr_static(params, "new", None)
    missing = [f"{WORKFLOW_TASK_MODULE}.AppExecutionParams.new (a classmethod)"
               ] if not isinstance(new, classmethod) else []
    later = _celery_runs.celery_app_missing(task)
    if not later:
        missing += [f"{WORKFLOW_TASK_MODULE}.workflow_based_app_execution_task.{name}"
                    for name in ("run", "apply_async") if not callable(getattr(task, name, None))]
    if missing:
        raise DifyNotSupported(version, missing)
    _patch_attribute(params, "new", _celery_runs.linking_new(new.__func__))

    def hold(patch: Any, task: Any) -> None:
        patch(task, "apply_async", _celery_runs.sending_apply_async(task.apply_async))
        patch(task, "run", _celery_runs.holding_run(task.run))
    if not later:
        hold(_patch_attribute, task)
        return
    # Celery names a shared task after its module and function (Dify keeps the default).
    name = f"{WORKFLOW_TASK_MODULE}.workflow_based_app_execution_task"
    _patch_later(lambda apply: _celery_runs.when_apps_finalize(
        name, lambda made: hold(apply, made)))


def uninstall() -> bool:
    """Puts Dify's classes and the previous configuration back; False if not installed."""
    global _restore
    if not _unpatch():
        return False
    if _restore is not None:
        configure(_restore[0])
        if _restore[1]:
            configure_attempt_limiters(**_restore[1])
        else:
            configure_attempt_limiters("process")
        if _restore[2] is not None:
            configure_key_rotation(**_restore[2])
        _restore = None
    return True


def _self() -> Any:
    import sys
    return sys.modules[__name__]
