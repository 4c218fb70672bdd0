"""Provider fallback for Dify's model call (Dify issue #4976: cross-provider fallback).

An operator names, per primary (provider, model), the ordered alternatives to try when the
primary fails::

    fallbacks = sluice.dify.ModelFallbacks({
        ("openai", "gpt-4o"): [("anthropic", "claude-3-5-sonnet-20241022"),
                               ("openai", "gpt-4o-mini")],
        ("langgenius/tongyi/tongyi", "qwen-max"): [("deepseek", "deepseek-chat")],
    }, breaker={"consecutive_failures": 5, "open_time": 30.0})
    sluice.dify.install(model_calls=governor, fallbacks=fallbacks)

Pairs, not "provider/model" strings: Dify's plugin provider ids (``langgenius/openai/openai``)
and many model names (``Qwen/Qwen2.5-72B-Instruct``) contain ``/``. A primary written with a
short provider name (``openai``) also matches a ModelInstance whose provider is a plugin id
ending in it (``langgenius/openai/openai``); an exact key wins over a short one.

The machinery is ``sluice.FallbackPolicy``'s, one per chain, its targets the primary followed by
the alternatives: a circuit breaker per target (an open one is skipped without a call), the
retry budget, backoff and deadline, and the ``actions`` per failure class. Every keyword
argument of ``ModelFallbacks`` besides `model_factory` is a FallbackPolicy option; sluice.dify's
defaults differ in two: ``max_retries_per_target`` is 0 (Dify's key rotation has already tried
the provider's other keys; set it to retry the same target) and ``actions`` makes ``auth``
fatal (an ``InvokeAuthorizationError`` says the workspace's own credentials are wrong: another
provider would hide it; it is raised without counting against the breaker, which every
workspace shares). The failures that fall back are those ``invoke_outcome`` reads from
Dify's ``Invoke*Error``: rate limited (after the key rotation found no key), connection and
server unavailable; a bad request (and auth) is raised at once, as is any error that is not a
provider's. ``ProviderTokenNotInitError`` raised because every key of the provider is cooling
down (sluice's key rotation: ``NoKeyAvailable``) counts as rate limited.

The primary's breaker is target 0 of its chain; a (provider, model) named in two chains has a
breaker in each, and the breakers are the process's (each worker learns on its own), shared by
every tenant. A chain may not name its primary again nor an alternative twice (that would be
a cycle); chains may point at each other (gpt-4o -> claude and claude -> gpt-4o): an
alternative is called directly, never through a chain of its own.

An alternative is a ModelInstance that `model_factory(tenant_id, provider, model)` builds (by
default Dify's ``ModelManager().get_model_instance(tenant_id, provider, ModelType.LLM, model)``);
it is invoked through Dify's own ``invoke_llm`` (the one install() replaced), so Dify's key
rotation applies to it. A factory that fails (the workspace has no credentials for the
alternative) ends the fallback: the last provider failure is raised (the factory's error, logged,
when there was none).
"""

from __future__ import annotations

import logging
import sys
import threading
from typing import Any, Callable, Dict, List, Mapping, Optional, Tuple

from .._errors import InvalidArgument, Unavailable
from ._args import checked_id
from ._errors import invoke_outcome

_OWNER = "ModelFallbacks"
#: A FallbackPolicy holds at most 64 targets: the primary and 63 alternatives.
MAX_ALTERNATIVES = 63
#: sluice.dify's FallbackPolicy defaults (see the module docstring).
DEFAULT_OPTIONS: Dict[str, Any] = {"max_retries_per_target": 0}
DEFAULT_ACTIONS: Dict[str, str] = {"auth": "fatal"}
#: The keywords ModelFallbacks hands to sluice.FallbackPolicy.
OPTIONS = ("max_retries_per_target", "deadline", "attempt_timeout", "backoff_base",
           "backoff_max", "retry_budget_ratio", "retry_budget_min", "context_length_target",
           "breaker", "actions", "clock", "on_breaker_transition")
# Dify's ModelType lives in one of these (api/ before graphon, graphon after).
MODEL_TYPE_MODULES = ("core.model_runtime.entities.model_entities",
                      "graphon.model_runtime.entities.model_entities")
SERVER_UNAVAILABLE_MODULES = ("core.model_runtime.errors.invoke",
                              "graphon.model_runtime.errors.invoke")

_log = logging.getLogger("sluice.dify")

Target = Tuple[str, str]


def _pair(name: str, value: Any) -> Target:
    """`value` as a (provider, model) pair of ids."""
    if isinstance(value, (str, bytes)) or not isinstance(value, (tuple, list)) \
            or len(value) != 2:
        raise TypeError(f"sluice.dify.{_OWNER}: {name} must be a (provider, model) pair of str, "
                        f"got {type(value).__name__} {value!r:.80}")
    return (checked_id(_OWNER, f"{name}[0] (provider)", value[0]),
            checked_id(_OWNER, f"{name}[1] (model)", value[1]))


def dify_model_instance(tenant_id: str, provider: str, model: str) -> Any:
    """The default `model_factory`: Dify's ``ModelManager().get_model_instance(tenant_id,
    provider, ModelType.LLM, model)``. Needs Dify's ``core.model_manager`` (install() checked
    it)."""
    import importlib
    manager = importlib.import_module("core.model_manager").ModelManager
    model_type = None
    for name in MODEL_TYPE_MODULES:
        try:
            model_type = importlib.import_module(name).ModelType.LLM
            break
        except (ImportError, AttributeError):
            continue
    if model_type is None:
        raise InvalidArgument(f"sluice.dify.{_OWNER}: Dify's ModelType is in none of "
                              f"{', '.join(MODEL_TYPE_MODULES)}; pass model_factory")
    return manager().get_model_instance(tenant_id=tenant_id, provider=provider,
                                        model_type=model_type, model=model)


class _Chain:
    """One primary's FallbackPolicy and its targets ((provider, model) by index)."""

    __slots__ = ("policy", "targets", "auth_is_fatal")

    def __init__(self, policy: Any, targets: List[Target], auth_is_fatal: bool) -> None:
        self.policy = policy
        self.targets = targets
        # A fatal auth error is raised without a report: one workspace's wrong credentials
        # must not open a breaker every workspace shares.
        self.auth_is_fatal = auth_is_fatal


class ModelFallbacks:
    """Ordered alternatives per primary (provider, model) for ``governed_invoke_llm`` and
    ``install(fallbacks=...)`` (see the module docstring). `chains` maps a (provider, model)
    pair to a non-empty list of (provider, model) pairs; `model_factory(tenant_id, provider,
    model)` builds an alternative's ModelInstance (default: Dify's ModelManager); every other
    keyword is a ``sluice.FallbackPolicy`` option (``breaker``, ``deadline``, ``actions``,
    ``max_retries_per_target``, ``retry_budget_ratio``, ``on_breaker_transition``, ``clock``,
    ...), applied to every chain. Thread-safe: the chains never change after construction.

    Example::

        fallbacks = sluice.dify.ModelFallbacks(
            {("openai", "gpt-4o"): [("anthropic", "claude-3-5-sonnet-20241022")]},
            breaker={"consecutive_failures": 3, "open_time": 30.0})
    """

    def __init__(self, chains: Mapping[Any, Any], *,
                 model_factory: Optional[Callable[[str, str, str], Any]] = None,
                 **options: Any) -> None:
        from .._fallback import FallbackPolicy
        if not isinstance(chains, Mapping):
            raise TypeError(f"sluice.dify.{_OWNER}: chains must be a mapping of (provider, "
                            f"model) to a list of (provider, model), got "
                            f"{type(chains).__name__}")
        if not chains:
            raise InvalidArgument(f"sluice.dify.{_OWNER}: chains must name at least one "
                                  "primary, got an empty mapping")
        if model_factory is not None and not callable(model_factory):
            raise TypeError(f"sluice.dify.{_OWNER}: model_factory must be callable or None, got "
                            f"{type(model_factory).__name__}")
        for name in options:
            if name not in OPTIONS:
                raise TypeError(f"sluice.dify.{_OWNER}: unknown option {name!r} (the "
                                f"FallbackPolicy options are {', '.join(OPTIONS)})")
        actions = options.pop("actions", None)
        if actions is not None and not isinstance(actions, Mapping):
            raise TypeError(f"sluice.dify.{_OWNER}: actions must be a mapping of failure class "
                            f"to action, got {type(actions).__name__}")
        settings = dict(DEFAULT_OPTIONS)
        settings.update(options)
        settings["actions"] = {**DEFAULT_ACTIONS, **(actions or {})}
        self.model_factory: Callable[[str, str, str], Any] = model_factory or dify_model_instance
        self._chains: Dict[Target, _Chain] = {}
        for key, alternatives in chains.items():
            primary = _pair("chains key", key)
            where = f"chains[{primary!r}]"
            if isinstance(alternatives, (str, bytes, Mapping)) or \
                    not isinstance(alternatives, (list, tuple)):
                raise TypeError(f"sluice.dify.{_OWNER}: {where} must be a list of (provider, "
                                f"model) pairs, got {type(alternatives).__name__}")
            if not alternatives:
                raise InvalidArgument(f"sluice.dify.{_OWNER}: {where} must list at least one "
                                      "alternative, got an empty list")
            if len(alternatives) > MAX_ALTERNATIVES:
                raise InvalidArgument(f"sluice.dify.{_OWNER}: {where} must list at most "
                                      f"{MAX_ALTERNATIVES} alternatives, got {len(alternatives)}")
            targets = [primary]
            for index, alternative in enumerate(alternatives):
                target = _pair(f"{where}[{index}]", alternative)
                if target == primary:
                    raise InvalidArgument(f"sluice.dify.{_OWNER}: {where}[{index}] names the "
                                          f"primary {primary!r} again (a cycle)")
                if target in targets:
                    raise InvalidArgument(f"sluice.dify.{_OWNER}: {where}[{index}] names "
                                          f"{target!r} twice (a cycle)")
                targets.append(target)
            if primary in self._chains:
                raise InvalidArgument(f"sluice.dify.{_OWNER}: chains names {primary!r} twice")
            self._chains[primary] = _Chain(FallbackPolicy(_named(targets), **settings), targets,
                                           settings["actions"].get("auth") == "fatal")

    def chain(self, provider: str, model: str) -> Optional[List[Target]]:
        """The targets tried for a call of (provider, model): the primary, then its alternatives;
        None when no chain is named for it (see the module docstring for short provider
        names)."""
        found = self._find(provider, model)
        return None if found is None else list(found.targets)

    def targets(self, provider: str, model: str) -> List[Dict[str, Any]]:
        """The breakers of (provider, model)'s chain: ``sluice.FallbackPolicy.targets()`` (name,
        state, attempts, successes, failures, skipped, trips, ...), in chain order; [] when no
        chain is named for it."""
        found = self._find(provider, model)
        return [] if found is None else found.policy.targets()

    def _find(self, provider: str, model: str) -> Optional[_Chain]:
        found = self._chains.get((provider, model))
        if found is None and "/" in provider:
            found = self._chains.get((provider.rsplit("/", 1)[1], model))
        return found


def _named(targets: List[Target]) -> List[Dict[str, str]]:
    """FallbackPolicy targets: named "provider/model" (a label only: the chain keeps the
    pairs), made unique with "#index" when two pairs read alike."""
    named, used = [], set()
    for index, (provider, model) in enumerate(targets):
        name = f"{provider}/{model}"
        if name in used:
            name = f"{name}#{index}"
        used.add(name)
        named.append({"name": name, "model": model})
    return named


def checked_fallbacks(owner: str, fallbacks: Any) -> Optional[ModelFallbacks]:
    """`fallbacks` as a ModelFallbacks: None, a ModelFallbacks, or a mapping of chains (made
    into one with the default factory and options)."""
    if fallbacks is None or isinstance(fallbacks, ModelFallbacks):
        return fallbacks
    if isinstance(fallbacks, Mapping):
        return ModelFallbacks(fallbacks)
    raise TypeError(f"sluice.dify.{owner}: fallbacks must be None, a sluice.dify.ModelFallbacks "
                    f"or a mapping of chains, got {type(fallbacks).__name__}")


# ---- what a failure means for the chain --------------------------------------------------------

def no_key_left(exc: BaseException) -> bool:
    """Whether `exc` is, or was raised from, sluice's NoKeyAvailable (every key cooling down:
    the patched _round_robin_invoke raises Dify's ProviderTokenNotInitError from it)."""
    from ._key_rotation import NoKeyAvailable
    seen = 0
    while exc is not None and seen < 8:
        if isinstance(exc, NoKeyAvailable):
            return True
        exc, seen = exc.__cause__ or exc.__context__, seen + 1
    return False


def fallback_outcome(exc: BaseException) -> Optional[Dict[str, Any]]:
    """The ``FallbackCall.next`` outcome of a failed attempt, or None when the chain must not
    go on (a sluice refusal: the operator's limits said no; an error that is not a provider's).
    Dify's invoke errors as ``invoke_outcome`` reads them; no key left as a rate limit."""
    if getattr(exc, "sluice_refusal", False):
        return None
    if no_key_left(exc):
        return {"status": 429}
    from ._errors import classify_invoke_error
    if classify_invoke_error(exc) is None:
        return None  # not a provider failure (a bug, a cancelled call): propagates as-is
    return invoke_outcome(exc)


# ---- every target skipped ----------------------------------------------------------------------

class ModelUnavailable(Unavailable):
    """No target of the chain could be called: every breaker is open (or the chain's deadline
    passed) before any attempt. ``retry_after`` says when one is usable again; inside a Dify it
    is also Dify's ``InvokeServerUnavailableError`` (Dify answers its provider-unavailable
    error)."""

    def __init__(self, message: str = "", retry_after: float = 0.0) -> None:
        Unavailable.__init__(self, message, retry_after)
        self.description = message


_unavailable_classes: Dict[type, type] = {}
_unavailable_lock = threading.Lock()


def unavailable_class() -> type:
    """ModelUnavailable, or inside a Dify a class that is both it and Dify's
    InvokeServerUnavailableError."""
    for name in SERVER_UNAVAILABLE_MODULES:
        dify_class = getattr(sys.modules.get(name), "InvokeServerUnavailableError", None)
        if isinstance(dify_class, type) and issubclass(dify_class, BaseException):
            break
    else:
        return ModelUnavailable
    with _unavailable_lock:
        cls = _unavailable_classes.get(dify_class)
        if cls is None:
            cls = type("ModelUnavailable", (dify_class, ModelUnavailable),
                       {"__module__": __name__, "__init__": ModelUnavailable.__init__,
                        "__str__": lambda self: self.description})
            _unavailable_classes[dify_class] = cls
        return cls


def direct_invoke(instance: Any) -> Callable[..., Any]:
    """An alternative ModelInstance's invoke_llm, unwrapped: the original install() replaced
    (``__sluice_original__``), so the alternative is not governed (nor falls back) twice."""
    method = getattr(type(instance), "invoke_llm", None)
    original = getattr(method, "__sluice_original__", None)
    if callable(original):
        return lambda **arguments: original(instance, **arguments)
    bound = getattr(instance, "invoke_llm", None)
    if not callable(bound):
        raise TypeError(f"sluice.dify.{_OWNER}: model_factory must return a ModelInstance (with "
                        f"invoke_llm), got {type(instance).__name__}")
    return bound


def log_factory_failure(provider: str, model: str, exc: BaseException) -> None:
    _log.warning("sluice.dify: fallback to %s/%s not possible: model_factory raised %s: %s",
                 provider, model, type(exc).__name__, exc)

