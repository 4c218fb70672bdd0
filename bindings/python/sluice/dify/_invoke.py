"""Dify's model call, governed: ``ModelInstance.invoke_llm`` through a sluice Governor.

Dify's ``ModelInstance.invoke_llm(prompt_messages, model_parameters, tools, stop, stream, user,
callbacks)`` (``api/core/model_manager.py``) returns an ``LLMResult``, or for ``stream=True`` a
generator of ``LLMResultChunk``; usage arrives as ``LLMUsage`` (``prompt_tokens``,
``completion_tokens``, ``total_tokens``) on the result, or on the last chunk's ``delta``. Dify's
``QuotaManagedModelInstance`` reserves, commits and releases hosted credits around the same call;
``governed_invoke_llm`` does that for every rule of a policy:

1. admit with the attributes ``tenant``, ``app``, ``provider``, ``model``, ``end_user`` (and any
   given), reserving a token estimate: ``sluice.estimate_prompt_tokens`` of the prompt messages
   (as an OpenAI-style body: images count as images) plus ``max_tokens`` from the parameters;
   refused: ``ModelRateLimited`` (inside a Dify, a subclass of Dify's ``InvokeRateLimitError``,
   so Dify answers its 429 ``rate_limit_error``), before the provider is called;
2. shaping: wait the admission's delay (cooperatively under gevent);
3. the response cache (when the policy has one): the answer filed under the request (messages,
   parameters, tools, stop, provider, app and stream-or-not) in the namespace of the policy's
   ``cache.namespace`` attributes; a hit gives the reserved tokens back and calls nothing;
4. the call; its usage settles the reservation (tokens over the estimate are debt); the answer
   (or the stream's chunks, once it completes) is stored; a Dify ``Invoke*Error`` (read by
   ``classify_invoke_error``) raised before any output gives the tokens back (the provider
   refused: nothing was spent) and carries ``sluice_failure``, and so does sluice's key
   rotation finding every key cooling down (``NoKeyAvailable``, inside a Dify the
   ``ProviderTokenNotInitError`` raised from it: no provider was called); any other failure
   keeps the estimate charged;
5. a stream holds the admission until it ends, raises or is closed.

Provider fallback (``fallbacks=``, a ``ModelFallbacks``: see sluice/dify/_fallbacks.py): when
(provider, model) has a chain, each target of it is one governed attempt of steps 1 to 5, on
the target's own provider and model (its own admission, token reservation and cache key). A
failure ``fallback_outcome`` accepts (Dify's rate limit after the key rotation, connection,
server unavailable) is reported to the chain's FallbackPolicy, whose breakers, retry budget
and actions pick the next target (an open breaker's target is skipped without a call); the
failed attempt's tokens went back in step 4. A bad request, an auth error (fatal by default),
a sluice refusal and any other error end the call at once, raised as they are. A stream is
peeked: it can fail over until its first chunk has been read, and is returned committed after
it (a later failure is reported to the breaker and raised as-is). When every target failed,
the last failure is raised; when none could be tried, ``ModelUnavailable``.

The cache keeps answers as bytes: ``PydanticCodec`` (the default) writes Dify's pydantic
results as JSON and reads them back as the class this process wrote (a class it never wrote is a
miss: nothing is imported from cached data).
"""

from __future__ import annotations

import contextvars
import json
import threading
from contextlib import contextmanager
from typing import Any, Callable, Dict, Iterator, List, Mapping, Optional, Tuple

from .. import _core
from .._governor import RuleRateLimited
from .._waiting import sleep
from ._errors import classify_invoke_error
from ._fallbacks import (checked_fallbacks, direct_invoke, fallback_outcome, log_factory_failure,
                         no_key_left, unavailable_class)
from ._responses import RATE_LIMIT_ERROR

# Dify's modules that define InvokeRateLimitError (model runtime inside api/, or graphon).
INVOKE_ERROR_MODULES = ("core.model_runtime.errors.invoke", "graphon.model_runtime.errors.invoke")
#: A stream whose encoded chunks pass this many bytes is not cached.
MAX_CACHED_STREAM_BYTES = 4 << 20


class ModelRateLimited(RuleRateLimited):
    """A model call refused by a Governor rule, before the provider was called. ``rule`` names
    the rule; ``headers()`` and ``retry_after`` are its; ``description`` is the text Dify shows;
    ``dify_code`` is the 429's code (``rate_limit_error``)."""

    dify_code = RATE_LIMIT_ERROR
    sluice_refusal = True

    def __init__(self, admission: Any, provider: str = "", model: str = "") -> None:
        RuleRateLimited.__init__(self, admission)
        self.description = (f"Rate limited by rule {self.rule!r} for {provider}/{model}: retry "
                            f"after {max(1, int(self.retry_after + 0.999))}s")
        self.args = (self.description,)

    def __str__(self) -> str:
        return self.description


_refusal_classes: Dict[type, type] = {}
_refusal_lock = threading.Lock()


def _refusal_class() -> type:
    """ModelRateLimited, or inside a Dify a class that is both it and Dify's
    InvokeRateLimitError (so Dify's handlers answer 429 rate_limit_error)."""
    import sys
    for name in INVOKE_ERROR_MODULES:
        dify_class = getattr(sys.modules.get(name), "InvokeRateLimitError", None)
        if isinstance(dify_class, type) and issubclass(dify_class, BaseException):
            break
    else:
        return ModelRateLimited
    with _refusal_lock:
        cls = _refusal_classes.get(dify_class)
        if cls is None:
            cls = type("ModelRateLimited", (dify_class, ModelRateLimited),
                       {"__module__": __name__, "__init__": ModelRateLimited.__init__,
                        "__str__": ModelRateLimited.__str__})
            _refusal_classes[dify_class] = cls
        return cls


class PydanticCodec:
    """Answers as bytes for the cache: a pydantic model (Dify's LLMResult / LLMResultChunk) as
    ``{"type": <module.qualname>, "data": <model_dump_json>}``; read back only as a class this
    codec encoded in this process (the cache is in process). Thread-safe."""

    def __init__(self) -> None:
        self._classes: Dict[str, type] = {}
        self._lock = threading.Lock()

    def encode(self, answer: Any) -> Optional[bytes]:
        """The answer as bytes, or None when it is not a pydantic model (not cached)."""
        dump = getattr(answer, "model_dump_json", None)
        if not callable(dump):
            return None
        cls = type(answer)
        name = f"{cls.__module__}.{cls.__qualname__}"
        with self._lock:
            self._classes[name] = cls
        return json.dumps({"type": name, "data": json.loads(dump())}).encode()

    def decode(self, data: bytes) -> Any:
        """The answer `data` holds, or None (a class this process never encoded: a miss)."""
        try:
            payload = json.loads(data)
            with self._lock:
                cls = self._classes.get(payload["type"])
            return None if cls is None else cls.model_validate(payload["data"])
        except Exception:  # an entry this codec cannot read is a miss
            return None


DEFAULT_CODEC = PydanticCodec()


def _value(x: Any) -> Any:
    """An enum's value (Dify's roles and content types are str enums), else x."""
    return getattr(x, "value", x)


def _plain(x: Any) -> Any:
    """x as JSON-able data (pydantic models dumped, enums as values)."""
    dump = getattr(x, "model_dump", None)
    if callable(dump):
        return dump(mode="json")
    if isinstance(x, Mapping):
        return {str(k): _plain(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_plain(v) for v in x]
    x = _value(x)
    if x is None or isinstance(x, (str, int, float, bool)):
        return x
    return str(x)


def _message(message: Any) -> Dict[str, Any]:
    """A Dify PromptMessage as an OpenAI chat message (what sluice's estimate reads)."""
    content = getattr(message, "content", None)
    if isinstance(content, (list, tuple)):
        parts = []
        for part in content:
            kind, data = _value(getattr(part, "type", "")), getattr(part, "data", "")
            if kind == "text":
                parts.append({"type": "text", "text": str(data)})
            elif kind == "image":
                parts.append({"type": "image_url",
                              "image_url": {"url": str(getattr(part, "url", "") or data)}})
            else:
                parts.append({"type": str(kind), "data": str(data)})
        content = parts
    elif content is not None and not isinstance(content, str):
        content = str(content)
    out: Dict[str, Any] = {"role": str(_value(getattr(message, "role", "user"))),
                           "content": content if content is not None else ""}
    for field in ("name", "tool_call_id", "tool_calls"):
        value = getattr(message, field, None)
        if value:
            out[field] = _plain(value)
    return out


def _max_tokens(parameters: Mapping[str, Any]) -> int:
    for name in ("max_tokens", "max_completion_tokens", "max_output_tokens"):
        value = parameters.get(name)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value
    return 0


def request_body(*, provider: str, model: str, app_id: Optional[str], prompt_messages: Any,
                 model_parameters: Optional[Mapping[str, Any]], tools: Any, stop: Any,
                 stream: bool) -> Tuple[Optional[bytes], int]:
    """(the request as an OpenAI-style JSON body, or None when it cannot be one; the token
    estimate). The body is the cache's key: the parameters, tools and stop, and in ``dify``
    the provider, the app and whether it streams (a stream and a blocking answer are cached
    apart)."""
    parameters = dict(model_parameters or {})
    messages = [_message(m) for m in prompt_messages]
    body: Dict[str, Any] = {k: _plain(v) for k, v in parameters.items()
                            if k not in ("model", "messages", "dify")}
    body.update(model=model, messages=messages,
                dify={"provider": provider, "app": app_id or "", "stream": bool(stream)})
    if tools:
        body["tools"] = _plain(tools)
    if stop:
        body["stop"] = _plain(stop)
    try:
        data = json.dumps(body, ensure_ascii=False, allow_nan=False).encode("utf-8")
    except (ValueError, UnicodeEncodeError):  # NaN, lone surrogates: estimated, never cached
        text = " ".join(str(m.get("content")) for m in messages)
        estimate = _core.estimate_text_tokens(text.encode("utf-8", "replace").decode("utf-8"))
        return None, estimate + _max_tokens(parameters)
    return data, _core.estimate_prompt_tokens(data) + _max_tokens(parameters)


def usage_tokens(answer: Any) -> Optional[int]:
    """Total tokens of an LLMResult's ``usage`` or an LLMResultChunk's ``delta.usage`` (None when
    it has none)."""
    usage = getattr(answer, "usage", None)
    if usage is None:
        usage = getattr(getattr(answer, "delta", None), "usage", None)
    if usage is None:
        return None
    total = getattr(usage, "total_tokens", None)
    if isinstance(total, int) and not isinstance(total, bool) and total > 0:
        return total
    parts = [getattr(usage, name, None) for name in ("prompt_tokens", "completion_tokens")]
    if all(isinstance(p, int) and not isinstance(p, bool) and p >= 0 for p in parts):
        return parts[0] + parts[1]
    return None


def _failed(admission: Any, exc: BaseException, produced: bool) -> None:
    """A call that raised: a Dify invoke error before any output gives the tokens back, and so
    does sluice's key rotation finding no key (no provider was called)."""
    failure = classify_invoke_error(exc) if isinstance(exc, Exception) else None
    if failure is None and not produced and isinstance(exc, Exception) and no_key_left(exc):
        admission.cancel()
        return
    if failure is not None:
        try:
            exc.sluice_failure = failure  # type: ignore[attr-defined]
        except AttributeError:
            pass
        if not produced:
            admission.cancel()
            return
    admission.release()


def _replay(chunks: List[Any]) -> Iterator[Any]:
    yield from chunks


def _stream(admission: Any, chunks: Any, codec: Any, cacheable: bool) -> Iterator[Any]:
    """The provider's stream, holding `admission` until it ends, raises or is closed."""
    produced, settled_usage, finished = False, None, False
    kept: Optional[List[bytes]] = [] if cacheable else None
    size = 0
    try:
        for chunk in chunks:
            produced = True
            tokens = usage_tokens(chunk)
            if tokens is not None:
                settled_usage = tokens
            if kept is not None:
                encoded = codec.encode(chunk)
                size += len(encoded) if encoded is not None else 0
                if encoded is None or size > MAX_CACHED_STREAM_BYTES:
                    kept = None  # not cacheable, or too big to keep: never stored
                else:
                    kept.append(encoded)
            yield chunk
        finished = True
    except GeneratorExit:
        raise
    except BaseException as exc:
        _failed(admission, exc, produced)
        raise
    finally:
        close = getattr(chunks, "close", None)
        try:
            if close is not None:
                close()
        finally:
            if finished:
                if kept:
                    admission.store_answer(kept)
                if settled_usage is not None:
                    admission.settle(settled_usage)
            admission.release()


def governed_invoke_llm(governor: Any, invoke: Callable[..., Any], *, tenant_id: str,
                        provider: str, model: str, prompt_messages: Any,
                        model_parameters: Optional[Mapping[str, Any]] = None,
                        tools: Any = None, stop: Any = None, stream: bool = True,
                        user: Optional[str] = None, callbacks: Any = None,
                        app_id: Optional[str] = None,
                        attributes: Optional[Mapping[str, str]] = None,
                        codec: Any = DEFAULT_CODEC, fallbacks: Any = None) -> Any:
    """``invoke(prompt_messages=..., model_parameters=..., tools=..., stop=..., stream=...,
    user=..., callbacks=...)`` (Dify's invoke_llm keywords) governed by `governor` (see the
    module docstring); returns what it returns (a stream as a generator that holds the
    admission). Raises ModelRateLimited when a rule refuses. With `fallbacks` (a
    ModelFallbacks, or a mapping of chains) naming a chain for (provider, model), a failed call
    moves on to the chain's alternatives (see "Provider fallback" in the module docstring)."""
    from .. import Governor
    if not isinstance(governor, Governor):
        raise TypeError(f"sluice.dify.governed_invoke_llm: governor must be a sluice.Governor, "
                        f"got {type(governor).__name__}")
    if not callable(invoke):
        raise TypeError(f"sluice.dify.governed_invoke_llm: invoke must be callable, got "
                        f"{type(invoke).__name__}")
    for name, value in (("tenant_id", tenant_id), ("provider", provider), ("model", model)):
        if not isinstance(value, str) or not value:
            raise TypeError(f"sluice.dify.governed_invoke_llm: {name} must be a non-empty str, "
                            f"got {value!r}")
    if isinstance(prompt_messages, (str, bytes)) or not hasattr(prompt_messages, "__iter__"):
        raise TypeError(f"sluice.dify.governed_invoke_llm: prompt_messages must be a list of "
                        f"prompt messages, got {type(prompt_messages).__name__}")
    if model_parameters is not None and not isinstance(model_parameters, Mapping):
        raise TypeError(f"sluice.dify.governed_invoke_llm: model_parameters must be a mapping or "
                        f"None, got {type(model_parameters).__name__}")
    fallbacks = checked_fallbacks("governed_invoke_llm", fallbacks)
    call = _Call(governor=governor, tenant_id=tenant_id, prompt_messages=list(prompt_messages),
                 model_parameters=model_parameters, tools=tools, stop=stop, stream=stream,
                 user=user, callbacks=callbacks, app_id=app_id,
                 attributes=dict(attributes or {}), codec=codec)
    chain = fallbacks._find(provider, model) if fallbacks is not None else None
    if chain is None:
        return call.attempt(invoke, provider, model)
    return _with_fallbacks(call, chain, fallbacks.model_factory, invoke)


class _Call:
    """One model call's arguments; ``attempt`` governs one provider's try at it."""

    __slots__ = ("governor", "tenant_id", "prompt_messages", "model_parameters", "tools", "stop",
                 "stream", "user", "callbacks", "app_id", "attributes", "codec", "cached")

    def __init__(self, **fields: Any) -> None:
        self.cached = False  # the last attempt was served from the cache
        for name, value in fields.items():
            setattr(self, name, value)

    def attempt(self, invoke: Callable[..., Any], provider: str, model: str) -> Any:
        """Steps 1 to 5 of the module docstring for (provider, model)."""
        request: Dict[str, str] = {"tenant": self.tenant_id, "provider": provider,
                                   "model": model}
        if self.app_id:
            request["app"] = self.app_id
        if self.user:
            request["end_user"] = self.user
        request.update(self.attributes)
        stream, codec = self.stream, self.codec
        body, estimate = request_body(provider=provider, model=model, app_id=self.app_id,
                                      prompt_messages=self.prompt_messages,
                                      model_parameters=self.model_parameters, tools=self.tools,
                                      stop=self.stop, stream=stream)
        admission = self.governor.admit(request, body=body, token_estimate=estimate)
        if not admission:
            admission.release()
            raise _refusal_class()(admission, provider, model)
        try:
            if admission.delay > 0:
                sleep(admission.delay)
            cached = admission.cached_answer() if body is not None else None
            if cached is not None:
                answer = _decoded(cached, codec, stream)
                if answer is not None:
                    admission.cancel()  # no provider was called: the tokens go back
                    admission.release()
                    self.cached = True
                    return answer
            result = invoke(prompt_messages=self.prompt_messages,
                            model_parameters=self.model_parameters, tools=self.tools,
                            stop=self.stop, stream=stream, user=self.user,
                            callbacks=self.callbacks)
        except BaseException as exc:
            _failed(admission, exc, produced=False)
            raise
        if stream and not hasattr(result, "usage") and hasattr(result, "__iter__"):
            return _stream(admission, iter(result), codec, body is not None)
        try:
            if body is not None:
                encoded = codec.encode(result)
                if encoded is not None:
                    admission.store_answer(encoded)
            tokens = usage_tokens(result)
            if tokens is not None:
                admission.settle(tokens)
        finally:
            admission.release()
        return result


def _with_fallbacks(call: _Call, chain: Any, factory: Callable[..., Any],
                    invoke: Callable[..., Any]) -> Any:
    """``call`` through `chain`'s FallbackPolicy: target 0 is the primary (`invoke`), the others
    ModelInstances from `factory`, each attempt governed on its own (provider, model). A
    stream is committed once its first chunk is read (peeked here, before it is returned)."""
    policy = chain.policy
    walk = policy.begin()
    last: Optional[BaseException] = None
    while (delay := walk._next_delay()) >= 0:
        if delay > 0:
            sleep(delay)
        provider, model = chain.targets[walk.target_index]
        if walk.target_index == 0:
            attempt_invoke = invoke
        else:
            try:
                instance = factory(call.tenant_id, provider, model)
            except Exception as exc:  # not the provider's failure: the fallback ends here
                log_factory_failure(provider, model, exc)
                if last is None:
                    raise
                raise last
            attempt_invoke = direct_invoke(instance)  # TypeError: the factory is wrong
        try:
            result = call.attempt(attempt_invoke, provider, model)
            if call.cached:
                # No provider was called: the walk is dropped unreported (its destructor
                # records the attempt as ignored), so a cache hit never closes a breaker.
                return result
            if call.stream and hasattr(result, "__next__"):
                try:
                    first = next(result)
                except StopIteration:  # an empty answer is still an answer
                    policy._report(walk, status=200)
                    return _replay([])
                walk.mark_first_byte()  # handed on from here: no fallback after it
                return _committed(policy, walk, first, result)
        except Exception as exc:
            outcome = fallback_outcome(exc)
            if outcome is None or (chain.auth_is_fatal and outcome.get("status") == 401):
                if last is not None and exc.__cause__ is None and \
                        getattr(exc, "sluice_refusal", False):
                    raise exc from last  # an alternative refused after the provider failed
                raise
            policy._report(walk, **outcome)
            last = exc
            continue
        walk._succeed()
        if policy._on_transition is not None:
            policy._publish_transitions()
        return result
    if last is not None:
        raise last  # every target failed, or a failure that must not fall back: as-is
    raise unavailable_class()(walk.message, walk.retry_after)


def _committed(policy: Any, walk: Any, first: Any, chunks: Any) -> Iterator[Any]:
    """A stream after its first chunk: relayed as-is; its end (or failure) is reported to the
    chain's breaker, a failure raised to the caller unchanged."""
    try:
        yield first
        for chunk in chunks:
            yield chunk
    except GeneratorExit:
        raise  # the client went away: abandoned, not the provider's failure
    except Exception as exc:
        outcome = fallback_outcome(exc)
        if outcome is not None:
            policy._report(walk, **outcome)
        raise
    else:
        policy._report(walk, status=200)
    finally:
        chunks.close()


def _decoded(cached: Any, codec: Any, stream: bool) -> Any:
    """A cached answer read back (a stream as a generator of its chunks), or None (a miss)."""
    if stream:
        if not isinstance(cached, list):
            return None
        chunks = [codec.decode(c) for c in cached]
        return None if any(c is None for c in chunks) else _replay(chunks)
    return codec.decode(cached) if isinstance(cached, bytes) else None


# ---- the patch of ModelInstance.invoke_llm ---------------------------------------------------

_scope: contextvars.ContextVar = contextvars.ContextVar("sluice.dify.model_call_scope",
                                                        default=None)


@contextmanager
def model_call_scope(*, app_id: Optional[str] = None, **attributes: str) -> Iterator[None]:
    """Within the block, model calls through the patched ``ModelInstance.invoke_llm`` carry the
    app (``app``) and these attributes (``end_user``, your own): a ModelInstance knows its
    tenant, provider and model, not the app it serves."""
    extra = {k: v for k, v in attributes.items() if isinstance(v, str)}
    if app_id:
        extra["app"] = app_id
    token = _scope.set(extra)
    try:
        yield
    finally:
        _scope.reset(token)


def governed_method(original: Callable[..., Any], governor: Any,
                    codec: Any = DEFAULT_CODEC, fallbacks: Any = None) -> Callable[..., Any]:
    """A replacement for ``ModelInstance.invoke_llm`` that calls `original` through
    ``governed_invoke_llm``: tenant from the instance's provider configuration, provider and
    model from the instance, app and attributes from ``model_call_scope``, end user from
    ``user``; `fallbacks` (a ModelFallbacks, a mapping of chains, or None) names the
    alternatives of a failing (provider, model)."""
    import functools
    fallbacks = checked_fallbacks("governed_method", fallbacks)

    @functools.wraps(original)
    def invoke_llm(self: Any, prompt_messages: Any, model_parameters: Any = None,
                   tools: Any = None, stop: Any = None, stream: bool = True,
                   user: Optional[str] = None, callbacks: Any = None, **extra: Any) -> Any:
        tenant = getattr(getattr(getattr(self, "provider_model_bundle", None), "configuration",
                                 None), "tenant_id", None)
        scope = dict(_scope.get() or {})
        app_id = scope.pop("app", None)

        def call(**arguments: Any) -> Any:
            return original(self, **arguments, **extra)

        return governed_invoke_llm(governor, call, tenant_id=str(tenant or "unknown"),
                                   provider=str(getattr(self, "provider", "") or "unknown"),
                                   model=str(getattr(self, "model", "") or "unknown"),
                                   prompt_messages=prompt_messages,
                                   model_parameters=model_parameters, tools=tools, stop=stop,
                                   stream=stream, user=user, callbacks=callbacks, app_id=app_id,
                                   attributes=scope, codec=codec, fallbacks=fallbacks)

    invoke_llm.__sluice_original__ = original  # type: ignore[attr-defined]
    return invoke_llm
