"""The sluice policy that backs sluice.dify's app concurrency cap.

Dify keeps one cap per app (``RateLimit(client_id=app_id, max_active_requests)``) and changes it
at run time. sluice holds it in one Governor rule keyed by the app: the rule's ``concurrency`` is
the ceiling (in host scope the shared region keeps that many slots per app), and each app's own
cap is set at run time with ``Governor.set_key_limits`` (the native per-call cap of
``ConcurrencyLimiter::TryAcquire(key, max_in_flight)``), so an app keeps one state whatever its
cap, in every scope.

``policy()`` writes that rule; an operator with a policy of their own adds the same rule to it
(``app_concurrency_rule()`` gives it as a dict) and passes the Governor to ``sluice.dify.install``.
"""

from __future__ import annotations

import json
from typing import Any, Dict, Optional

from .._errors import InvalidArgument
from ._args import checked_count, checked_seconds
from ._redis import policy_store_fields

#: The rule's name in the policy.
RULE = "dify-app-concurrency"
#: The attribute (and its value) sluice.dify's admissions carry, so that the rule matches only
#: them: ``{"dify_limit": "app-concurrency", "app": <client id>}``.
MATCH_ATTRIBUTE = "dify_limit"
MATCH_VALUE = "app-concurrency"

#: Defaults: caps up to 128 requests per app, 4096 apps (a 17 MB host region), and a
#: lease of APP_MAX_EXECUTION_TIME (1200 s): a killed worker's slots come back after at most that.
DEFAULT_CEILING = 128
DEFAULT_MAX_APPS = 4096
DEFAULT_LEASE = 1200.0

SCOPES = ("process", "host", "cluster")
#: Cluster scope: how long an app admission waits for Redis (the store's command_timeout). Not
#: the store's 5 ms default, made for per-request limits on a hot path: an app slot is taken once
#: per run that lasts seconds, and a reply later than 5 ms (a busy host) sent the decision to the
#: failure mode, which admitted on top of the slots Redis held (the end-to-end benchmark saw 12
#: streams at once against a cap of 6; with 50 ms, none above 6 under load).
DEFAULT_COMMAND_TIMEOUT = 0.1


def app_concurrency_rule(scope: str = "host", *, ceiling: int = DEFAULT_CEILING,
                         max_apps: int = DEFAULT_MAX_APPS, lease: float = DEFAULT_LEASE,
                         store: Optional[str] = None, local_share: int = 1) -> Dict[str, Any]:
    """The rule (a dict for a policy's ``rules`` list) that holds every app's in-flight requests.

    `scope`: "process" (tests; one worker), "host" (every worker of the host, in shared memory) or
    "cluster" (every host, in Redis: `store` names the policy's store, and while Redis cannot
    answer each process admits cap / `local_share`). `ceiling`: the largest per-app cap;
    `max_apps`: apps with requests in flight at once; `lease`: seconds a slot lives (make it at
    least Dify's APP_MAX_EXECUTION_TIME).
    """
    if scope not in SCOPES:
        raise InvalidArgument(f"sluice.dify.app_concurrency_rule: scope must be one of "
                              f"{', '.join(SCOPES)}, got {scope!r}")
    owner = "app_concurrency_rule"
    rule: Dict[str, Any] = {
        "name": RULE,
        "match": {MATCH_ATTRIBUTE: MATCH_VALUE},
        "key": ["app"],
        "concurrency": checked_count(owner, "ceiling", ceiling, 1),
        "lease": f"{checked_seconds(owner, 'lease', lease)!r}s",
        "scope": scope,
        "max_keys": checked_count(owner, "max_apps", max_apps, 1),
    }
    if scope == "cluster":
        if not store:
            raise InvalidArgument("sluice.dify.app_concurrency_rule: store must name the "
                                  "policy's Redis store in cluster scope, got None")
        rule.update(store=store, on_failure="local",
                    local_share=checked_count(owner, "local_share", local_share, 1))
    return rule


def policy(scope: str = "host", *, name: str = "dify", redis_url: Optional[str] = None,
           ceiling: int = DEFAULT_CEILING, max_apps: int = DEFAULT_MAX_APPS,
           lease: float = DEFAULT_LEASE, local_share: int = 1,
           command_timeout: float = DEFAULT_COMMAND_TIMEOUT, settings: Any = None) -> str:
    """A whole policy (JSON text, which the Governor reads as YAML) with the app concurrency
    rule. `name` names the policy, and so the host region (``<name>.dify-app-concurrency``);
    In cluster scope the Redis is `redis_url` (any form of sluice.RedisOptionsFromUrl:
    ``redis://``, ``rediss://``, ``redis+sentinel://``, ``redis+cluster://``) or, without one,
    the one Dify's own ``REDIS_*`` settings name (`settings`: see redis_store_keywords);
    `command_timeout` (seconds) is how long a decision waits for Redis before the failure mode
    decides instead."""
    document: Dict[str, Any] = {"version": 1, "name": name}
    store = None
    if scope == "cluster":
        store = "dify-redis"
        timeout = checked_seconds("policy", "command_timeout", command_timeout)
        fields = {"url": redis_url} if redis_url else policy_store_fields(settings)
        document["stores"] = [{"name": store, **fields, "command_timeout": f"{timeout!r}s"}]
    document["rules"] = [app_concurrency_rule(scope, ceiling=ceiling, max_apps=max_apps,
                                              lease=lease, store=store,
                                              local_share=local_share)]
    return json.dumps(document)
