"""Helpers for the sluice.dify tests: a backend per test, unique region names, a Dify-shaped
package tree on disk."""

from __future__ import annotations

import os
import pathlib
import sys
import textwrap
import uuid
from contextlib import contextmanager
from typing import Any, Callable, Dict, Iterator, Optional

import sluice
import sluice.dify as dify
from sluice.dify import _app_concurrency

from gunicorn_support import remove_regions  # noqa: F401  (the dify tests' region clean-up)


# Dify-shaped invoke errors (Dify's live in core/model_runtime/errors/invoke.py; sluice.dify
# recognises them by class name along the MRO, so these fakes stand in for them).
class InvokeError(ValueError):
    def __init__(self, description=None):
        super().__init__(description)
        self.description = description


class InvokeRateLimitError(InvokeError):
    pass


class InvokeAuthorizationError(InvokeError):
    pass


class InvokeConnectionError(InvokeError):
    pass


class InvokeServerUnavailableError(InvokeError):
    pass


class InvokeBadRequestError(InvokeError):
    pass


def unique_name(tag: str = "dify") -> str:
    return f"pytest-{tag}-{os.getpid()}-{uuid.uuid4().hex[:8]}"


def fresh_backend(scope: str = "process", name: Optional[str] = None,
                  ceiling: int = dify.DEFAULT_CEILING,
                  **options) -> dify.AppConcurrency:
    """Configures a new AppConcurrency (its own policy name, so its own host region) and forgets
    every cached RateLimit; returns it."""
    name = name or unique_name()
    governor = sluice.Governor(dify.policy(scope, name=name, ceiling=ceiling, **options))
    backend = dify.AppConcurrency(governor, ceiling=ceiling)
    dify.configure(backend)
    _app_concurrency.RateLimit._instances.clear()
    return backend


class FakeCeleryTask:
    """A Celery-task-shaped object (Dify's ``workflow_based_app_execution_task``): ``run`` is the
    task's body (Celery keeps it as the instance's function), ``delay(*args)`` calls
    ``apply_async(args, kwargs)`` as Celery's Task.delay does, and ``apply_async`` hands the
    arguments to `send` (the broker)."""

    def __init__(self, body, send):
        self.run = body
        self._send = send

    def delay(self, *args, **kwargs):
        return self.apply_async(args, kwargs)

    def apply_async(self, args=None, kwargs=None, **options):
        return self._send(tuple(args or ()), dict(kwargs or {}))


class FakeRunParams:
    """Dify's ``AppExecutionParams``-shaped run parameters: ``new`` (a classmethod) makes them
    with a fresh ``workflow_run_id``, ``model_dump_json`` is the task's payload."""

    def __init__(self, app_id, workflow_run_id, streaming=True):
        self.app_id = app_id
        self.workflow_run_id = workflow_run_id
        self.streaming = streaming

    @classmethod
    def new(cls, app_id, workflow_run_id=None, streaming=True):
        return cls(app_id, workflow_run_id or str(uuid.uuid4()), streaming)

    def model_dump_json(self):
        import json
        return json.dumps({"app_id": self.app_id, "workflow_run_id": self.workflow_run_id,
                           "streaming": self.streaming, "args": {"query": "hi"}})


def write_fake_dify(root: str, *, version: str = "1.14.0", omit: Iterator[str] = (),
                    celery_task: bool = False) -> None:
    """A Dify-shaped package tree under `root`: the modules sluice.dify patches, with minimal
    classes of Dify's names, and configs.dify_config.CURRENT_VERSION. `omit` lists
    "module.symbol" names to leave out (a Dify install() does not know); `celery_task` adds
    tasks/app_generate/workflow_execute_task.py (Dify 1.13+) with a FakeCeleryTask and
    FakeRunParams."""
    omitted = set(omit)

    def body(module: str, symbols: Dict[str, str]) -> str:
        return "\n\n".join(code for name, code in symbols.items()
                           if f"{module}.{name}" not in omitted) + "\n"

    files = {
        "configs/__init__.py": f"class _Config:\n    CURRENT_VERSION = {version!r}\n\n"
                               "dify_config = _Config()\n",
        "core/__init__.py": "",
        "core/errors/__init__.py": "",
        "core/errors/error.py": body("core.errors.error", {
            "AppInvokeQuotaExceededError": "class AppInvokeQuotaExceededError(ValueError):\n"
                                           "    description = 'App Invoke Quota Exceeded'"}),
        "core/app/__init__.py": "",
        "core/app/features/__init__.py": "",
        "core/app/features/rate_limiting/__init__.py":
            "from .rate_limit import *  # noqa: F401,F403\n",
        "core/app/features/rate_limiting/rate_limit.py": body(
            "core.app.features.rate_limiting.rate_limit", {
                "RateLimit": "class RateLimit:\n    def __init__(self, client_id, "
                             "max_active_requests):\n        self.client_id = client_id",
                "RateLimitGenerator": "class RateLimitGenerator:\n    pass",
                "rate_limit_context": "def rate_limit_context(rate_limit, request_id):\n"
                                      "    raise NotImplementedError",
            }),
        "libs/__init__.py": "",
        "libs/helper.py": body("libs.helper", {
            "RateLimiter": "class RateLimiter:\n    def __init__(self, prefix, max_attempts, "
                           "time_window, member_factory=None, redis_client=None):\n"
                           "        self.prefix = prefix"}),
        "services/__init__.py": "",
        "services/app_generate_service.py":
            "from core.app.features.rate_limiting import RateLimit\n"
            "from libs.helper import RateLimiter\n\n"
            "system_rate_limiter = RateLimiter('app_daily_rate_limiter', 5000, 86400)\n",
    }
    if celery_task:
        task = "tasks.app_generate.workflow_execute_task"
        files["tasks/__init__.py"] = ""
        files["tasks/app_generate/__init__.py"] = ""
        files["tasks/app_generate/workflow_execute_task.py"] = (
            "from dify_support import FakeCeleryTask, FakeRunParams\n\n"
            "SENT = []\nRAN = []\n\n" + body(task, {
                "AppExecutionParams": "class AppExecutionParams(FakeRunParams):\n    pass",
                "workflow_based_app_execution_task":
                    "workflow_based_app_execution_task = FakeCeleryTask(\n"
                    "    RAN.append, lambda args, kwargs: SENT.append((args, kwargs)))",
            }))
    for relative, text in files.items():
        path = os.path.join(root, relative)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w") as f:
            f.write(textwrap.dedent(text))


DIFY_TOP_LEVEL = ("configs", "core", "libs", "services", "tasks")


def forget_fake_dify() -> None:
    """Drops the fake Dify's modules from sys.modules."""
    for name in list(sys.modules):
        if name.split(".", 1)[0] in DIFY_TOP_LEVEL:
            del sys.modules[name]


@contextmanager
def fake_dify_tree(root: Any) -> Iterator[Callable[..., Any]]:
    """Yields ``make(modules=None, **options)``, which writes a Dify-shaped tree under `root`
    (write_fake_dify's `options`, then `modules`: relative path -> source, dedented) and puts it
    first on sys.path; returns `root`. On the way out: sluice.dify uninstalled and reset to
    process scope, the tree off sys.path and its modules forgotten."""
    root = str(root)

    def make(modules: Optional[Dict[str, str]] = None, **options: Any) -> Any:
        write_fake_dify(root, **options)
        for relative, text in (modules or {}).items():
            path = os.path.join(root, relative)
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "w") as f:
                f.write(textwrap.dedent(text))
        if root not in sys.path:
            sys.path.insert(0, root)
        return pathlib.Path(root)

    try:
        yield make
    finally:
        dify.uninstall()
        dify.configure(None)
        dify.configure_attempt_limiters("process")
        dify.RateLimit._instances.clear()
        if root in sys.path:
            sys.path.remove(root)
        forget_fake_dify()
