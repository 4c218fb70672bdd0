"""Streaming workflow and advanced-chat runs executed in Celery hold their app's slot until the
run ends, wherever it runs.

Dify 1.13+ executes a streaming workflow or advanced-chat request in a Celery worker
(``tasks/app_generate/workflow_execute_task.py``: ``workflow_based_app_execution_task(payload)``,
the run's ``AppExecutionParams`` as JSON) and the API process only relays the run's events from
Redis to the SSE client. The API process entered the request (``RateLimit.enter``) and its
stream held the slot, so a client that went away gave the slot back while the run went on
calling providers, and the cap no longer bounded the runs in flight (Dify #35895).

Here the API process hands the request's slot over to the run.

API process (``sluice.dify.install`` patches ``AppExecutionParams.new`` and the task's
``apply_async``, which ``delay`` calls):

1. ``AppExecutionParams.new`` inside ``rate_limit_context(rate_limit, request_id)`` (where
   Dify prepares the run) links the run's ``workflow_run_id`` to the request and takes the
   request's *API mark*.
2. ``apply_async`` adds the request to the payload (``_sluice_app_slot``: client id, request
   id, cap); the worker takes it out again before Dify reads the payload.
3. The request's stream checks for the run's *run mark* after each event; once the run holds
   it, the request gives its API mark and then its own slot back (``RateLimit.take_over_check``),
   so it counts once. Its last exit does the same if the run never took over.

Worker (the task's ``run``, see ``hold_run``):

1. takes a slot judged against the rule's ceiling, not the app's cap (``admit_over``): the
   request holds one already, so this one admits nothing new;
2. checks that the API mark is still held, and takes the run mark (refused: the same run is
   running elsewhere, a redelivered task). With both, the handover stands. Otherwise (the
   client went away before the run started, the request already handed over to another
   delivery of the task) it gives that slot back and takes one under the app's cap like a new
   request; refused, it raises Dify's AppInvokeQuotaExceededError and the run does not start;
3. runs, and at its end (return or exception) gives its slot and the run mark back. A killed
   worker's slot and mark come back at the end of their lease.

Why no more runs than the cap are ever in flight: a run holds a slot from its step 1 to its
end. Its over-cap slot is kept only when the API mark was seen after the slot was taken, and
the API process always gives its mark back before its slot (at its last exit, or once it sees
the run mark, which the run takes after its slot and the check): so while the over-cap slot was
being taken, the request's own slot was still held. The app is counted twice for a moment,
never short, and only one delivery of a run can take the request's place.

The marks are permits of a sluice.ConcurrencyLimiter of cap 1 in the app rule's scope
(``handover_limiter``: host scope, a shared region ``<policy name>.dify-app-handover``; cluster
scope, the same Redis), keyed by app and request id, leased like the app's slots. Both sides
must be configured alike (``install`` in the API processes and in the Celery workers); a worker
without marks runs the task as Dify does.

(sluice's ConcurrencyLimiter has no holder identity: with a permit keyed by request id that a
second process can join, steps 1 and 2 would be one acquire. The marks stand in for it.)
"""

from __future__ import annotations

import json
import logging
import os
import sys
import threading
from collections import OrderedDict
from contextlib import contextmanager
from typing import Any, Callable, Dict, Iterator, Optional, Tuple

from .._errors import InvalidArgument
from ._app_concurrency import backend, current_request, quota_exceeded, _rule_key
from ._args import checked_count, checked_id, checked_seconds
from ._policy import DEFAULT_LEASE

logger = logging.getLogger("sluice.dify")

#: The payload field that carries the request to the worker.
PAYLOAD_FIELD = "_sluice_app_slot"
#: The marks' region (host scope) or Redis name (cluster scope): ``<policy name>.`` + this.
HANDOVER_NAME = "dify-app-handover"
#: Marks held at once (two per run being handed over or running): the host region's keys.
DEFAULT_MAX_MARKS = 65536
# Runs prepared in this process and not yet sent (or sent again): workflow_run_id -> request.
_MAX_LINKS = 65536


def api_mark_key(client_id: str, request_id: str) -> str:
    return f"api/{_rule_key(client_id)}/{_rule_key(request_id)}"


def run_mark_key(client_id: str, request_id: str) -> str:
    return f"run/{_rule_key(client_id)}/{_rule_key(request_id)}"


def handover_limiter(scope: str = "host", *, name: str = "dify", lease: float = DEFAULT_LEASE,
                     max_marks: int = DEFAULT_MAX_MARKS, redis: Any = None,
                     clock: Any = None) -> Any:
    """The sluice.ConcurrencyLimiter that holds the handover marks, in the app rule's `scope`
    ("host": every process of the host, the region ``<name>.dify-app-handover``; "cluster":
    `redis`, a sluice.RedisStore; "process": tests). `name` is the policy's name, `lease` the app
    rule's lease (seconds), `max_marks` how many marks may be held at once (host scope)."""
    from .. import ConcurrencyLimiter
    owner = "handover_limiter"
    options: Dict[str, Any] = {
        "lease": checked_seconds(owner, "lease", lease),
        "max_keys": checked_count(owner, "max_marks", max_marks, 1),
    }
    region = f"{checked_id(owner, 'name', name)}.{HANDOVER_NAME}"
    if scope == "process":
        if clock is not None:
            options["clock"] = clock
    elif scope == "host":
        options["shared_region"] = region
    elif scope == "cluster":
        if redis is None:
            raise InvalidArgument("sluice.dify.handover_limiter: redis must be a sluice.RedisStore "
                                  "in cluster scope, got None")
        # While Redis cannot answer a mark is refused: the request is not linked (its run goes
        # as Dify sends it), and a run that cannot take its mark takes a slot under the cap.
        options.update(redis=redis, redis_name=region, on_failure="deny")
    else:
        raise InvalidArgument(f"sluice.dify.handover_limiter: scope must be process, host or "
                              f"cluster, got {scope!r}")
    return ConcurrencyLimiter(1, **options)


_links_lock = threading.Lock()
_links: "OrderedDict[str, Tuple[str, str, int]]" = OrderedDict()


def link_run(workflow_run_id: Any) -> bool:
    """API side: links the run `workflow_run_id` to the request of the enclosing
    ``rate_limit_context`` and takes the request's API mark; False when there is nothing to
    hand over (no enclosing request, no cap, no marks configured, or the mark is refused)."""
    current = current_request.get()
    handover = backend().handover
    if current is None or handover is None or not isinstance(workflow_run_id, str):
        return False
    rate_limit, request_id = current
    with rate_limit._lock:
        held = rate_limit._held.get(request_id)
        linked = held is not None and held.run_key is not None
    if held is None:
        return False  # unlimited, or not entered here
    if not linked:
        mark = handover.try_acquire(api_mark_key(rate_limit.client_id, request_id))
        if not mark:
            return False  # another process marks this request id: it hands over, not this one
        with rate_limit._lock:
            if rate_limit._held.get(request_id) is held and held.run_key is None:
                held.mark, mark = mark, None
                held.run_key = run_mark_key(rate_limit.client_id, request_id)
        if mark is not None:  # exited meanwhile, or linked by another greenlet
            mark.release()
    with _links_lock:
        _links[workflow_run_id] = (rate_limit.client_id, request_id,
                                   rate_limit.max_active_requests)
        _links.move_to_end(workflow_run_id)
        if len(_links) > _MAX_LINKS:
            _links.popitem(last=False)
    return True


def payload_with_slot(payload: Any) -> Any:
    """API side: `payload` (the task's JSON) with its linked request added; unchanged when it
    is not a JSON object of a linked run."""
    if not isinstance(payload, str):
        return payload
    try:
        document = json.loads(payload)
    except ValueError:
        return payload
    run_id = document.get("workflow_run_id") if isinstance(document, dict) else None
    if not isinstance(run_id, str):
        return payload
    with _links_lock:
        link = _links.get(run_id)  # kept: Dify may send again after a failed enqueue
    if link is None or document.get("app_id", link[0]) != link[0]:
        return payload
    client_id, request_id, cap = link
    document[PAYLOAD_FIELD] = {"client_id": client_id, "request_id": request_id,
                               "max_active_requests": cap}
    return json.dumps(document)


def split_payload(payload: Any) -> Tuple[Any, Optional[Dict[str, Any]]]:
    """Worker side: (`payload` without the request, the request) or (`payload`, None) when it
    carries none."""
    if not isinstance(payload, str) or PAYLOAD_FIELD not in payload:
        return payload, None
    try:
        document = json.loads(payload)
    except ValueError:
        return payload, None
    if not isinstance(document, dict) or PAYLOAD_FIELD not in document:
        return payload, None
    slot = document.pop(PAYLOAD_FIELD)
    if not isinstance(slot, dict):
        raise InvalidArgument(f"sluice.dify.hold_run: the payload's {PAYLOAD_FIELD} must be an "
                              f"object, got {type(slot).__name__}")
    return json.dumps(document), slot


def _take(client_id: str, request_id: str, cap: int) -> Tuple[Any, Any]:
    """The run's slot and run mark (steps 1-3 of the module's description)."""
    concurrency = backend()
    handover = concurrency.handover
    admission = concurrency.admit_over(client_id)
    try:
        if admission and handover.in_flight(api_mark_key(client_id, request_id)) >= 1:
            run_mark = handover.try_acquire(run_mark_key(client_id, request_id))
            if run_mark:
                return admission, run_mark  # the request's slot was still held: handed over
        if admission:
            admission.release()  # nothing to take over: a new request, under the cap
        admission = concurrency.admit(client_id, cap)
        if not admission:
            raise quota_exceeded(client_id, cap, admission)
        return admission, None
    except BaseException:
        if admission:
            admission.release()
        raise


@contextmanager
def hold_run(client_id: str, request_id: str, max_active_requests: int) -> Iterator[str]:
    """Holds the slot of app `client_id` that request `request_id` (entered in another process,
    with cap `max_active_requests`) hands over, for the block: the Celery side of the handover
    (see the module's description). Raises Dify's AppInvokeQuotaExceededError when the request
    no longer held its slot and the app is full; gives the slot back when the block ends, also
    when it raises. Without handover marks configured (process scope) the block runs as Dify's
    task does, holding nothing."""
    client_id = checked_id("hold_run", "client_id", client_id)
    request_id = checked_id("hold_run", "request_id", request_id)
    cap = checked_count("hold_run", "max_active_requests", max_active_requests, 0)
    if cap == 0 or backend().handover is None:
        yield request_id
        return
    admission, run_mark = _take(client_id, request_id, cap)
    try:
        yield request_id
    finally:
        try:
            admission.release()
        finally:
            if run_mark:
                run_mark.release()


def linking_new(new: Callable[..., Any]) -> Any:
    """``AppExecutionParams.new`` (the function under the classmethod) that links the run it
    makes to the enclosing request."""
    def linked_new(cls: Any, *args: Any, **kwargs: Any) -> Any:
        params = new(cls, *args, **kwargs)
        try:
            link_run(getattr(params, "workflow_run_id", None))
        except Exception:  # no handover then: the run goes as Dify sends it
            logger.warning("sluice.dify: could not link a Celery run to its request",
                           exc_info=True)
        return params
    linked_new.__wrapped__ = new  # type: ignore[attr-defined]
    return classmethod(linked_new)


def _with_payload(args: Any, kwargs: Any, change: Callable[[Any], Any]) -> Tuple[Any, Any]:
    if args:
        args = (change(args[0]), *tuple(args)[1:])
    elif kwargs and "payload" in kwargs:
        kwargs = {**kwargs, "payload": change(kwargs["payload"])}
    return args, kwargs


def sending_apply_async(apply_async: Callable[..., Any]) -> Callable[..., Any]:
    """The task's ``apply_async`` that adds the linked request to the payload."""
    def apply_async_with_slot(args: Any = None, kwargs: Any = None, *rest: Any,
                              **options: Any) -> Any:
        args, kwargs = _with_payload(args, kwargs, payload_with_slot)
        return apply_async(args, kwargs, *rest, **options)
    apply_async_with_slot.__wrapped__ = apply_async  # type: ignore[attr-defined]
    return apply_async_with_slot


def holding_run(run: Callable[..., Any]) -> Callable[..., Any]:
    """The task's ``run`` that holds the handed-over slot while it runs."""
    def run_holding_slot(*args: Any, **kwargs: Any) -> Any:
        found: Dict[str, Any] = {}

        def take_out(payload: Any) -> Any:
            payload, found["slot"] = split_payload(payload)
            return payload
        args, kwargs = _with_payload(args, kwargs, take_out)
        slot = found.get("slot")
        if slot is None:
            return run(*args, **kwargs)
        with hold_run(slot.get("client_id"), slot.get("request_id"),
                      slot.get("max_active_requests")):
            return run(*args, **kwargs)
    run_holding_slot.__wrapped__ = run  # type: ignore[attr-defined]
    return run_holding_slot


def _forget_links() -> None:
    """After fork(), in the child: the parent's requests are not the child's to hand over."""
    global _links_lock
    _links_lock = threading.Lock()
    _links.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_links)


def celery_app_missing(task: Any) -> bool:
    """Whether `task` is a Celery ``shared_task`` (a proxy that looks the task up in the current
    Celery app at each use) in a process that has made no Celery app yet. Resolving it now would
    make Celery's fallback app and patch that app's copy of the task, while Dify's app (made
    later by ``ext_celery.init_app``) sends and runs its own copy, unpatched. Dify's Gunicorn
    workers load the app after ``post_fork``, so this is the usual case there."""
    local = sys.modules.get("celery.local")
    if local is None or not isinstance(task, local.Proxy):
        return False
    # celery._state holds the current and default apps; celery.current_app would make the
    # fallback app this check is about.
    from celery import _state
    return _state.default_app is None and getattr(_state._tls, "current_app", None) is None


def when_apps_finalize(task_name: str, patch_task: Callable[[Any], None]) -> Callable[[], None]:
    """Calls `patch_task(task)` with the task `task_name` of each Celery app finalized from now
    on (Celery finalizes an app when its tasks are first looked up: the first ``delay``, the
    worker's start), once its shared tasks are registered; returns what stops it. The hook is
    the one ``shared_task`` registers its tasks with (celery._state.connect_on_app_finalize)."""
    from celery import _state

    def on_finalize(app: Any) -> None:
        def after_finalize(sender: Any = None, **_: Any) -> None:
            task = sender._tasks.get(task_name)
            if task is not None:
                patch_task(task)
        # Sent once every shared task is registered (the finalizers run in no set order).
        app.on_after_finalize.connect(after_finalize, weak=False)

    _state.connect_on_app_finalize(on_finalize)
    return lambda: _state._on_app_finalizers.discard(on_finalize)


def install_in_celery_worker(*args: Any, **kwargs: Any) -> None:
    """Runs ``sluice.dify.install(*args, **kwargs)`` in the process of a Celery worker that
    executes its tasks, whatever its pool; call it where the worker loads its app (Dify:
    ``api/celery_entrypoint.py``, after ``from app import celery``).

    Celery sends ``worker_process_init`` only in a prefork child (and under ``-P solo``); the
    gevent, eventlet and threads pools run tasks in the worker's own process and send none of
    it, and Dify's worker runs ``-P gevent`` by default. So: under prefork, in each child
    (``worker_process_init``: nothing sluice makes is shared through the fork); under any other
    pool, in the worker itself at ``worker_init``, before its consumer starts."""
    from celery import signals
    from celery.concurrency import get_implementation

    from . import install, installed

    def in_the_worker(sender: Any = None, **_: Any) -> None:
        pool = get_implementation(getattr(sender, "pool_cls", None) or "prefork")
        if pool.__module__ != "celery.concurrency.prefork":
            install(*args, **kwargs)

    def in_each_child(**_: Any) -> None:
        if not installed():  # -P solo sends it after worker_init, in the same process
            install(*args, **kwargs)

    signals.worker_init.connect(in_the_worker, weak=False)
    signals.worker_process_init.connect(in_each_child, weak=False)
