"""``sluice.dify.install``: swaps Dify's limiter classes for sluice.dify's, in a running Dify.

Each target is a module and a symbol of Dify's ``api/`` package (``core.app.features.
rate_limiting.rate_limit.RateLimit``, ``libs.helper.RateLimiter``, ...). Before changing anything,
install checks that every required one exists, and refuses (``DifyNotSupported``, naming the Dify
version and each missing symbol) a Dify whose layout it does not know. Then it sets each symbol
to sluice.dify's class, and also every already-imported Dify module's reference to the original
(``from ... import RateLimit`` made a copy of the name), keeping the originals for
``uninstall``.
"""

from __future__ import annotations

import importlib
import sys
import threading
from typing import Any, Dict, Iterable, List, NamedTuple, Optional, Tuple

from .._errors import FailedPrecondition

# Dify's top-level packages (api/): the modules searched for copies of a patched name.
_DIFY_PACKAGES = ("core", "services", "controllers", "libs", "tasks", "extensions", "models",
                  "app_factory", "events", "fields", "factories")

RATE_LIMIT_MODULE = "core.app.features.rate_limiting.rate_limit"
HELPER_MODULE = "libs.helper"
ERRORS_MODULE = "core.errors.error"
MODEL_MANAGER_MODULE = "core.model_manager"
CONVERTER_MODULE = "core.app.apps.base_app_generate_response_converter"
# Dify 1.13+: streaming workflow and advanced-chat runs execute in this Celery task.
WORKFLOW_TASK_MODULE = "tasks.app_generate.workflow_execute_task"


class Target(NamedTuple):
    module: str
    symbol: str
    replacement: str  # the name in sluice.dify ('' for a symbol read, not replaced)
    required: bool


TARGETS: Tuple[Target, ...] = (
    Target(RATE_LIMIT_MODULE, "RateLimit", "RateLimit", True),
    Target(RATE_LIMIT_MODULE, "RateLimitGenerator", "RateLimitGenerator", True),
    Target(RATE_LIMIT_MODULE, "rate_limit_context", "rate_limit_context", False),
    Target(HELPER_MODULE, "RateLimiter", "AttemptLimiter", True),
    Target(ERRORS_MODULE, "AppInvokeQuotaExceededError", "", True),
    # Read, and a method of it patched, only when install() is asked to (model_calls=...).
    Target(MODEL_MANAGER_MODULE, "ModelInstance", "", False),
    # Read; its _error_to_stream_response reports sluice's refusals inside a stream as 429s.
    Target(CONVERTER_MODULE, "AppGenerateResponseConverter", "", False),
    # Read, and replaced (with ModelInstance._round_robin_invoke) only when install() is asked
    # to (key_rotation=...).
    Target(MODEL_MANAGER_MODULE, "LBModelManager", "", False),
    # Read; AppExecutionParams.new and the task's apply_async / run patched so that a streamed
    # run executed in Celery holds its request's slot until it ends (install(celery_runs=...)).
    Target(WORKFLOW_TASK_MODULE, "workflow_based_app_execution_task", "", False),
    Target(WORKFLOW_TASK_MODULE, "AppExecutionParams", "", False),
)


class DifyNotSupported(FailedPrecondition):
    """install() found a Dify whose layout it does not know; nothing was patched. ``version``
    is the Dify version ('unknown' when unreadable), ``missing`` the missing symbols."""

    def __init__(self, version: str, missing: List[str]) -> None:
        super().__init__(f"sluice.dify.install: Dify {version} is not supported: missing "
                         f"{', '.join(missing)}; nothing was patched")
        self.version = version
        self.missing = missing


def read_dify_version() -> str:
    """Dify's version: ``configs.dify_config``'s CURRENT_VERSION (or project.version), else the
    ``dify-api`` package's metadata, else 'unknown'."""
    try:
        configs = sys.modules.get("configs") or importlib.import_module("configs")
        config = getattr(configs, "dify_config", None)
        for version in (getattr(config, "CURRENT_VERSION", None),
                        getattr(getattr(config, "project", None), "version", None)):
            if isinstance(version, str) and version:
                return version
    except Exception:  # not a Dify, or its settings cannot load here
        pass
    try:
        from importlib.metadata import version
        return version("dify-api")
    except Exception:
        return "unknown"


def _find(target: Target) -> Tuple[Optional[Any], Optional[Any]]:
    """(module, original) or Nones when the module or symbol is missing."""
    try:
        module = importlib.import_module(target.module)
    except ImportError:
        return None, None
    if not hasattr(module, target.symbol):
        return module, None
    return module, getattr(module, target.symbol)


_lock = threading.RLock()  # a later patch (patch_later) may run inside install, in Celery
# What install() changed: (module, symbol, original), in order.
_patched: List[Tuple[Any, str, Any]] = []
_dify_quota_error: Optional[type] = None
# A class attribute patch_attribute found only on a base class.
_INHERITED = object()
# The targets read, not replaced, by "module.symbol".
_read: Dict[str, Any] = {}
_previous_state: Optional[Tuple[Any, Any]] = None


def dify_quota_error_class() -> Optional[type]:
    """Dify's AppInvokeQuotaExceededError: the one install() found, else the one of a Dify
    already loaded in this process, else None."""
    if _dify_quota_error is not None:
        return _dify_quota_error
    module = sys.modules.get(ERRORS_MODULE)
    found = getattr(module, "AppInvokeQuotaExceededError", None)
    return found if isinstance(found, type) and issubclass(found, BaseException) else None


def _copies_of(original: Any) -> List[Tuple[Any, str]]:
    """Every (module, name) of an imported Dify module bound to `original`."""
    copies = []
    for name, module in list(sys.modules.items()):
        if module is None or name.split(".", 1)[0] not in _DIFY_PACKAGES:
            continue
        for attribute, value in list(getattr(module, "__dict__", {}).items()):
            if value is original:
                copies.append((module, attribute))
    return copies


def read_symbol(name: str) -> Any:
    """A target install() read ("module.symbol"), or None."""
    return _read.get(name)


def patch_attribute(holder: Any, attribute: str, new: Any) -> None:
    """Sets `holder.attribute` to `new`, to be put back by uninstall. Only from `on_patched`
    (the lock is held)."""
    original = holder.__dict__.get(attribute, _INHERITED) if isinstance(holder, type) else \
        getattr(holder, attribute)
    _patched.append((holder, attribute, original))
    setattr(holder, attribute, new)


def patch_everywhere(name: str, new: Any) -> None:
    """Sets the read target `name` ("module.symbol") to `new` in its module and in every
    imported Dify module holding a copy of it, to be put back by uninstall. Only from
    `on_patched`."""
    module_name, symbol = name.rsplit(".", 1)
    original = _read[name]
    for holder, attribute in _copies_of(original) or [(sys.modules[module_name], symbol)]:
        patch_attribute(holder, attribute, new)


# Run by unpatch (under the lock): stops patches registered to happen later (patch_later).
_on_unpatch: List[Any] = []


def patch_later(register: Any) -> None:
    """For a patch that can only happen later (a Celery task of an app not made yet): calls
    ``register(apply)``, which must return a function that unregisters; `apply(holder,
    attribute, new)`, called later from any thread, patches like patch_attribute while this
    install stands (False once uninstalled). Only from `on_patched`."""
    generation = len(_history)

    def apply(holder: Any, attribute: str, new: Any) -> bool:
        with _lock:
            if len(_history) != generation or not _patched:
                return False
            patch_attribute(holder, attribute, new)
            return True
    _on_unpatch.append(register(apply))


# One entry per install(): tells an install's later patches from the next one's.
_history: List[None] = []


def _restore(holder: Any, attribute: str, original: Any) -> None:
    if original is _INHERITED:
        delattr(holder, attribute)  # the class had none of its own: its base's shows again
    else:
        setattr(holder, attribute, original)


def patch(version: Optional[str], replacements: Any, on_patched: Any,
          require: Iterable[str] = ()) -> str:
    """Checks every target, then patches; returns the Dify version. `replacements` is the
    sluice.dify module (its names are the targets' replacements); `require` names optional
    targets ("module.symbol") this install needs; `on_patched()` runs under the lock once
    everything is in place (install's configuration, method patches)."""
    global _dify_quota_error
    required = set(require)
    with _lock:
        if _patched:
            raise FailedPrecondition("sluice.dify.install: already installed; call "
                                     "sluice.dify.uninstall() first")
        found = [(target, *_find(target)) for target in TARGETS]
        missing = [f"{t.module}.{t.symbol}" + ("" if module is not None else
                                               f" (no module {t.module})")
                   for t, module, original in found
                   if (t.required or f"{t.module}.{t.symbol}" in required) and original is None]
        version = version or read_dify_version()
        if missing:
            raise DifyNotSupported(version, missing)
        for target, module, original in found:
            if original is None:
                continue
            if not target.replacement:
                _read[f"{target.module}.{target.symbol}"] = original
                if target.symbol == "AppInvokeQuotaExceededError":
                    _dify_quota_error = original
                continue
            new = getattr(replacements, target.replacement)
            for holder, attribute in _copies_of(original) or [(module, target.symbol)]:
                _patched.append((holder, attribute, original))
                setattr(holder, attribute, new)
        _history.append(None)
        try:
            on_patched()
        except BaseException:
            _stop_later_patches()
            for holder, attribute, original in reversed(_patched):
                _restore(holder, attribute, original)
            _patched.clear()
            _read.clear()
            _dify_quota_error = None
            raise
        return version


def _stop_later_patches() -> None:
    while _on_unpatch:
        _on_unpatch.pop()()


def unpatch() -> bool:
    """Puts every original back; False when nothing was installed."""
    global _dify_quota_error
    with _lock:
        if not _patched and _dify_quota_error is None:
            return False
        _stop_later_patches()
        for holder, attribute, original in reversed(_patched):
            _restore(holder, attribute, original)
        _patched.clear()
        _read.clear()
        _dify_quota_error = None
        return True


def installed() -> bool:
    """Whether install() has patched a Dify (and uninstall() not undone it)."""
    return bool(_patched)
