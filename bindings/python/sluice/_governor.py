"""The Governor's Python facade: one policy, one call per request.

``Governor.admit`` decides a request against every rule of the policy that matches it. Rules in
process or host scope decide in well under a microsecond without waiting; a rule in cluster
scope waits for Redis (a few hundred microseconds, at most the store's timeouts), so when the
policy has one (``waits_for_redis``) ``admit`` runs the native call on gevent's thread pool
under gevent, and ``admit_async`` on the loop's executor under asyncio: the loop never blocks.
The Admission of such a policy does the same with its own waits (settle, cancel, release, the
end of a ``with`` block; ``settle_async`` and friends, ``async with``, for coroutines).

``Governor.call`` is the whole path in one call: admit (``sluice.RateLimited`` when refused, with
the binding rule's headers), the cached answer when there is one, the fallback chain for the
request's model (``fn`` gets each attempt) or ``fn(None)`` without one, the answer stored in the
cache, and the reservation settled with the usage read from the answer.

``Governor.stream`` / ``stream_async`` do the same for streamed answers: the fallback chain moves
on until an attempt's first chunk, the chunks are read for usage as they pass (settled at the
end) and a complete stream of bytes chunks is cached; a cached stream is replayed.

``PolicyWatcher`` reloads a Governor when its policy file changes, from a greenlet, a thread or
an asyncio task, never blocking the loop.
"""

from __future__ import annotations

import asyncio
import os
import sys
import threading
from typing import Any, AsyncIterator, Callable, Dict, Iterator, Mapping, Optional

from . import _core
from ._errors import InvalidArgument, RateLimited
from ._fallback import _call_plan, _stream_plan, outcome_of
from ._waiting import EMIT, END, NEXT, OPEN, run_plan, run_plan_async, run_stream, \
    run_stream_async, sleep

Admission = _core.Admission


def _dict_of(value: Optional[Mapping[str, str]], name: str) -> Optional[Dict[str, str]]:
    """A copy of a mapping argument (None stays None); anything else is a TypeError (dict()
    would take a str or a list of pairs and fail with a plain ValueError)."""
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise TypeError(f"sluice.Governor: {name} must be a mapping of str to str, got "
                        f"{type(value).__name__}")
    return dict(value)


def _under_gevent() -> bool:
    gevent = sys.modules.get("gevent")
    if gevent is None:
        return False
    monkey = sys.modules.get("gevent.monkey")
    if monkey is not None and monkey.is_module_patched("thread"):
        return True
    return isinstance(gevent.getcurrent(), gevent.Greenlet)


class RuleRateLimited(RateLimited):
    """A Governor's refusal: ``rule`` names the binding rule, and ``headers()`` are its
    RateLimit / Retry-After headers."""

    def __init__(self, admission: Admission) -> None:
        if isinstance(admission, _OffLoopAdmission):
            admission = admission.native
        if not isinstance(admission, Admission):
            raise TypeError(f"sluice.RuleRateLimited: admission must be a sluice.Admission, got "
                            f"{type(admission).__name__}")
        super().__init__(admission.decision,
                         f"rate limited by rule {admission.rule!r}: retry after "
                         f"{admission.decision.retry_after:.3f}s")
        self.rule: str = admission.rule
        self._headers = admission.headers()

    def headers(self, policy_name: Optional[str] = None):  # type: ignore[override]
        if policy_name is not None:
            return self.decision.headers(policy_name=policy_name)
        return list(self._headers)


class _OffLoopAdmission:
    """The Admission of a policy with a cluster-scope rule (``Governor.waits_for_redis``), whose
    settle, cancel and release wait for Redis (at most the store's timeouts). Under gevent they
    run on the hub's thread pool, so the other greenlets go on, and so does the end of a ``with``
    block; coroutines await ``settle_async``, ``cancel_async``, ``release_async`` or use
    ``async with``, which run them on the loop's executor. Release explicitly (or with ``with``):
    an Admission collected with permits held releases them on the collecting thread, which under
    gevent is the hub. Everything else is the native Admission's (``native``)."""

    __slots__ = ("native",)

    def __init__(self, native: Admission) -> None:
        self.native = native

    def __getattr__(self, name: str) -> Any:
        return getattr(self.native, name)

    def __bool__(self) -> bool:
        return self.native.allowed

    @staticmethod
    def _apply(method: Callable[..., Any], *args: Any) -> Any:
        if _under_gevent():
            import gevent
            return gevent.get_hub().threadpool.apply(method, args)
        return method(*args)

    def settle(self, usage: Any) -> None:
        return self._apply(self.native.settle, usage)

    def cancel(self) -> None:
        return self._apply(self.native.cancel)

    def release(self) -> None:
        return self._apply(self.native.release)

    async def settle_async(self, usage: Any) -> None:
        return await asyncio.get_running_loop().run_in_executor(None, self.native.settle, usage)

    async def cancel_async(self) -> None:
        return await asyncio.get_running_loop().run_in_executor(None, self.native.cancel)

    async def release_async(self) -> None:
        return await asyncio.get_running_loop().run_in_executor(None, self.native.release)

    def __enter__(self) -> "_OffLoopAdmission":
        return self

    def __exit__(self, *exc: Any) -> bool:
        self.release()
        return False

    async def __aenter__(self) -> "_OffLoopAdmission":
        return self

    async def __aexit__(self, *exc: Any) -> bool:
        await self.release_async()
        return False


def _relay(chunks: Any):
    """A plan that emits every chunk of an opened iterable (no fallback: no chain)."""
    while (chunk := (yield (NEXT, chunks))) is not END:
        yield (EMIT, chunk)


def _native(admission: Any) -> Admission:
    """The native Admission behind what admit returned (``call`` offloads its waits itself)."""
    return admission.native if isinstance(admission, _OffLoopAdmission) else admission


class _NoTransitions:
    """What the fallback plans ask of a policy: a Governor's chains deliver no transitions
    (they are counted in its metrics)."""
    _on_transition = None

    @staticmethod
    def _report(call: Any, **outcome: Any) -> None:
        call.next(**outcome)


def _usage_of(answer: Any) -> Optional[int]:
    """The total tokens an answer reports: a sluice.Usage, an object with ``usage.total_tokens``
    (openai's responses), a dict with ``usage``, or a JSON / SSE body (sluice.read_usage)."""
    if isinstance(answer, _core.Usage):
        return answer.total_tokens
    usage = getattr(answer, "usage", None)
    if usage is None and isinstance(answer, dict):
        usage = answer.get("usage")
    if isinstance(usage, dict):
        total = usage.get("total_tokens")
        if isinstance(total, int) and not isinstance(total, bool):
            return total
    total = getattr(usage, "total_tokens", None)
    if isinstance(total, int) and not isinstance(total, bool):
        return total
    if isinstance(answer, (bytes, str)):
        try:
            found = _core.read_usage(answer if isinstance(answer, bytes) else answer.encode())
        except Exception:  # not JSON, not a known provider: usage unknown
            return None
        if found is not None:
            return found.total_tokens
    return None


class Governor(_core.Governor):
    """Runs a sluice policy (see docs/policy.md). ``Governor(text)`` parses YAML or JSON;
    ``Governor(path="policy.yaml")`` reads a file; ``Governor()`` reads $SLUICE_CONFIG.

    Example (a Flask view under Gunicorn + gevent)::

        governor = sluice.Governor(path="/etc/sluice/policy.yaml")

        with governor.admit({"tenant": tenant, "model": model}, ip=request.remote_addr,
                            body=request.get_data()) as admission:
            if not admission:
                return "slow down", 429, admission.headers()
            answer = call_model(...)
            admission.settle(usage)
    """

    def admit(self, attributes: Optional[Mapping[str, str]] = None, *,
              headers: Optional[Mapping[str, str]] = None, ip: Optional[str] = None,
              body: Any = None, token_estimate: int = -1) -> Admission:
        """Decides the request (see the class docstring); a refusal is a falsy Admission."""
        attributes = _dict_of(attributes, "attributes")
        headers = _dict_of(headers, "headers")
        native = super().admit
        if not self.waits_for_redis:
            return native(attributes, headers=headers, ip=ip, body=body,
                          token_estimate=token_estimate)
        if _under_gevent():
            import gevent  # the hub's pool runs the wait on a real thread: the loop goes on
            return _OffLoopAdmission(gevent.get_hub().threadpool.apply(
                native, (attributes,), {"headers": headers, "ip": ip, "body": body,
                                        "token_estimate": token_estimate}))
        return _OffLoopAdmission(native(attributes, headers=headers, ip=ip, body=body,
                                        token_estimate=token_estimate))

    async def admit_async(self, attributes: Optional[Mapping[str, str]] = None, *,
                          headers: Optional[Mapping[str, str]] = None, ip: Optional[str] = None,
                          body: Any = None, token_estimate: int = -1) -> Admission:
        """``admit`` for coroutines: cluster-scope waits run on the loop's executor."""
        attributes = _dict_of(attributes, "attributes")
        headers = _dict_of(headers, "headers")
        native = super().admit
        if not self.waits_for_redis:
            return native(attributes, headers=headers, ip=ip, body=body,
                          token_estimate=token_estimate)
        loop = asyncio.get_running_loop()
        return _OffLoopAdmission(await loop.run_in_executor(
            None, lambda: native(attributes, headers=headers, ip=ip, body=body,
                                 token_estimate=token_estimate)))

    def _refuse(self, admission: Admission) -> None:
        raise RuleRateLimited(admission)

    def call(self, fn: Callable[[Any], Any], attributes: Optional[Mapping[str, str]] = None, *,
             headers: Optional[Mapping[str, str]] = None, ip: Optional[str] = None,
             body: Any = None, token_estimate: int = -1,
             usage: Callable[[Any], Optional[int]] = _usage_of,
             classify: Callable[[BaseException], Optional[dict]] = outcome_of) -> Any:
        """The whole path for one request (see the module docstring). ``fn`` receives the
        fallback attempt (``target``, ``model``, ``endpoint_id``, ``timeout``), or None when
        the policy has no chain for the request's model; its answer is returned. A cached answer
        (bytes, or a list of bytes chunks) is returned without calling ``fn``; an answer that is
        bytes or a list of bytes is stored. ``usage(answer)`` gives the tokens to settle (None:
        the estimate stays charged). Raises ``sluice.RateLimited`` when refused."""
        admission = _native(self.admit(attributes, headers=headers, ip=ip, body=body,
                                       token_estimate=token_estimate))
        try:
            if not admission:
                self._refuse(admission)
            if admission.delay > 0:
                sleep(admission.delay)
            cached = admission.cached_answer()
            if cached is not None:
                self._off_hub(admission.cancel)  # no provider was called: the tokens go back
                return cached
            answer = self._run(admission, fn, classify)
            tokens = self._store(admission, answer, usage)
            if tokens is not None:
                self._off_hub(admission.settle, tokens)
            return answer
        finally:
            self._off_hub(admission.release)

    def _off_hub(self, method: Callable[..., Any], *args: Any) -> Any:
        """Runs an Admission method that talks to Redis in cluster scope (settle, cancel,
        release) on gevent's thread pool under gevent, as ``admit`` does: the hub goes on."""
        if self.waits_for_redis and _under_gevent():
            import gevent
            return gevent.get_hub().threadpool.apply(method, args)
        return method(*args)

    async def _off_loop(self, method: Callable[..., Any], *args: Any) -> Any:
        """``_off_hub`` for coroutines: on the loop's executor in cluster scope."""
        if not self.waits_for_redis:
            return method(*args)
        return await asyncio.get_running_loop().run_in_executor(None, method, *args)

    async def call_async(self, fn: Callable[[Any], Any],
                         attributes: Optional[Mapping[str, str]] = None, *,
                         headers: Optional[Mapping[str, str]] = None, ip: Optional[str] = None,
                         body: Any = None, token_estimate: int = -1,
                         usage: Callable[[Any], Optional[int]] = _usage_of,
                         classify: Callable[[BaseException], Optional[dict]] = outcome_of) -> Any:
        """``call`` for coroutines: ``fn`` is an async function."""
        admission = _native(await self.admit_async(attributes, headers=headers, ip=ip, body=body,
                                                   token_estimate=token_estimate))
        try:
            if not admission:
                self._refuse(admission)
            if admission.delay > 0:
                await asyncio.sleep(admission.delay)
            cached = admission.cached_answer()
            if cached is not None:
                await self._off_loop(admission.cancel)
                return cached
            try:
                fallback = admission.begin_call()
            except _core_not_found():
                answer = await fn(None)
            else:
                answer = await run_plan_async(
                    _call_plan(_NoTransitions(), fn, classify, fallback,
                               fallback._next_delay(), None))
            tokens = self._store(admission, answer, usage)
            if tokens is not None:
                await self._off_loop(admission.settle, tokens)
            return answer
        finally:
            await self._off_loop(admission.release)

    def stream(self, fn: Callable[[Any], Any], attributes: Optional[Mapping[str, str]] = None,
               *, headers: Optional[Mapping[str, str]] = None, ip: Optional[str] = None,
               body: Any = None, token_estimate: int = -1, provider: str = "auto",
               classify: Callable[[BaseException], Optional[dict]] = outcome_of
               ) -> Iterator[Any]:
        """``call`` for streamed answers: ``fn(attempt)`` returns an iterable of chunks (an SSE
        stream). Admits at once (``sluice.RateLimited`` when refused, before the iterator is
        returned); then a cached answer is replayed (its chunks, or its bytes once); else the
        fallback chain for the request's model moves on until an attempt yields its first chunk,
        and from then on the stream is committed (a failure raises ``sluice.StreamBroken``).
        Bytes chunks are read for the provider's usage as they pass (``sluice.UsageReader`` for
        `provider`), which settles the reservation when the stream ends; a stream of bytes
        chunks that completes is stored in the cache. The permits are released when the stream
        ends, fails or is closed (an iterator never read releases them when collected)."""
        admission, reader = self._open_stream(fn, attributes, headers, ip, body, token_estimate,
                                              provider)
        return run_stream(self._stream_plan(admission, reader, fn, classify))

    def stream_async(self, fn: Callable[[Any], Any],
                     attributes: Optional[Mapping[str, str]] = None, *,
                     headers: Optional[Mapping[str, str]] = None, ip: Optional[str] = None,
                     body: Any = None, token_estimate: int = -1, provider: str = "auto",
                     classify: Callable[[BaseException], Optional[dict]] = outcome_of
                     ) -> AsyncIterator[Any]:
        """``stream`` for coroutines: ``fn`` returns an async iterable (or an awaitable of one).
        The admission is decided when this is called, on the calling thread: in cluster scope
        that waits for Redis (at most the store's timeouts), as do the settle and release at the
        end; keep streams on an asyncio loop that must never block in process or host scope, or
        ``await admit_async`` and drive the Admission yourself."""
        admission, reader = self._open_stream(fn, attributes, headers, ip, body, token_estimate,
                                              provider)
        return run_stream_async(self._stream_plan(admission, reader, fn, classify))

    def _open_stream(self, fn, attributes, headers, ip, body, token_estimate, provider):
        if not callable(fn):
            raise TypeError(f"sluice.Governor.stream: fn must be callable, got {type(fn).__name__}")
        reader = _core.UsageReader(provider)  # a bad provider name fails before admitting
        admission = _native(self.admit(attributes, headers=headers, ip=ip, body=body,
                                       token_estimate=token_estimate))
        if not admission:
            try:
                self._refuse(admission)
            finally:
                self._off_hub(admission.release)
        return admission, reader

    def _stream_plan(self, admission: Admission, reader: Any, fn: Callable[[Any], Any],
                     classify: Callable[[BaseException], Optional[dict]]):
        """The plan behind ``stream`` / ``stream_async`` (see sluice._waiting for plans): the
        fallback stream plan, its bytes read for usage and kept for the cache on the way."""
        upstream = None
        try:
            if admission.delay > 0:
                yield admission.delay
            cached = admission.cached_answer()
            if cached is not None:
                self._off_hub(admission.cancel)  # no provider was called: the tokens go back
                for chunk in (cached if isinstance(cached, list) else [cached]):
                    yield (EMIT, chunk)
                return
            kept: Optional[list] = []
            try:
                fallback = admission.begin_call()
            except _core_not_found():
                fallback = None
            if fallback is None:
                chunks = yield (OPEN, fn, (None,), "Governor.stream_async")
                upstream = _relay(chunks)
            else:
                upstream = _stream_plan(_NoTransitions(), fn, 0.0, classify, call=fallback)
            effect = next(upstream)
            while True:
                if effect.__class__ is tuple and effect[0] == EMIT:
                    chunk = effect[1]
                    if isinstance(chunk, bytes):
                        reader.feed(chunk)
                        if kept is not None:
                            kept.append(chunk)
                    else:
                        kept = None  # not bytes: neither cached nor read for usage
                    yield effect
                    value = None
                else:
                    try:
                        value = yield effect
                    except BaseException as exc:
                        try:
                            effect = upstream.throw(exc)
                        except StopIteration:
                            break
                        continue
                try:
                    effect = upstream.send(value)
                except StopIteration:
                    break
            usage = reader.finish()
            if kept:
                admission.store_answer(kept)
            if usage is not None:
                self._off_hub(admission.settle, usage.total_tokens)
        finally:
            if upstream is not None:
                upstream.close()  # a consumer that stopped reading: the attempt is abandoned
            self._off_hub(admission.release)

    @staticmethod
    def _run(admission: Admission, fn: Callable[[Any], Any],
             classify: Callable[[BaseException], Optional[dict]]) -> Any:
        try:
            fallback = admission.begin_call()
        except _core_not_found():
            return fn(None)
        return run_plan(_call_plan(_NoTransitions(), fn, classify, fallback,
                                   fallback._next_delay(), None))

    @staticmethod
    def _store(admission: Admission, answer: Any,
               usage: Callable[[Any], Optional[int]]) -> Optional[int]:
        """Stores a bytes answer in the cache; returns the tokens to settle (None: unknown)."""
        if isinstance(answer, bytes) or (isinstance(answer, list) and answer and
                                         all(isinstance(c, bytes) for c in answer)):
            admission.store_answer(answer)
        return usage(answer)


def _core_not_found():
    from ._errors import NotFound
    return NotFound


def _core_failed_precondition():
    from ._errors import FailedPrecondition
    return FailedPrecondition


class PolicyWatcher:
    """Reloads ``governor`` from ``path`` whenever the file changes (its size, mtime or inode),
    checking every ``interval`` seconds from a greenlet (under gevent), a daemon thread, or an
    asyncio task (``run_async``). A policy that fails to parse or build is reported to
    ``on_error`` (default: logged by the ``sluice`` logger) and the running policy stays.
    ``stop()`` ends it; it is also a context manager."""

    def __init__(self, governor: Governor, path: str, *, interval: float = 1.0,
                 on_reload: Optional[Callable[[], Any]] = None,
                 on_error: Optional[Callable[[BaseException], Any]] = None) -> None:
        if not isinstance(governor, _core.Governor):
            raise TypeError(f"sluice.PolicyWatcher: governor must be a sluice.Governor, got "
                            f"{type(governor).__name__}")
        if isinstance(interval, bool) or not isinstance(interval, (int, float)):
            raise TypeError(f"sluice.PolicyWatcher: interval must be seconds, got "
                            f"{type(interval).__name__}")
        if not 0.01 <= float(interval) <= 86400:  # NaN fails too
            raise InvalidArgument(f"sluice.PolicyWatcher: interval must be seconds in "
                                  f"[0.01, 86400], got {interval!r}")
        for name, callback in (("on_reload", on_reload), ("on_error", on_error)):
            if callback is not None and not callable(callback):
                raise TypeError(f"sluice.PolicyWatcher: {name} must be callable or None, got "
                                f"{type(callback).__name__}")
        self._governor = governor
        self._path = os.fspath(path)
        self._interval = float(interval)
        self._on_reload = on_reload
        self._on_error = on_error
        self._stopped = threading.Event()
        self._seen = self._signature()
        self._runner: Any = None
        self.reloads = 0
        self.errors = 0

    def _signature(self) -> Optional[tuple]:
        try:
            st = os.stat(self._path)
        except (OSError, ValueError):  # ValueError: a NUL or a surrogate in the path
            return None
        return (st.st_ino, st.st_size, st.st_mtime_ns)

    def check(self) -> bool:
        """Reloads now if the file changed; True when it reloaded."""
        signature = self._signature()
        if signature is None or signature == self._seen:
            return False
        self._seen = signature
        try:
            self._governor.reload(path=self._path)
        except Exception as exc:  # the running policy stays; report and keep watching
            self.errors += 1
            if self._on_error is not None:
                self._on_error(exc)
            else:
                import logging
                logging.getLogger("sluice").error("sluice: policy %s not reloaded: %s",
                                                  self._path, exc)
            return False
        self.reloads += 1
        if self._on_reload is not None:
            self._on_reload()
        return True

    def _loop(self) -> None:
        # A thread waits on the event, so stop() wakes it at once; a greenlet sleeps
        # cooperatively (stop() kills it at that sleep: a reload never switches greenlets).
        in_thread = isinstance(self._runner, threading.Thread)
        while not self._stopped.is_set():
            if in_thread:
                self._stopped.wait(self._interval)
            else:
                sleep(self._interval)
            if not self._stopped.is_set():
                self.check()

    def start(self) -> "PolicyWatcher":
        """Watches from a greenlet under gevent, else from a daemon thread."""
        if self._runner is not None:
            raise _core_failed_precondition()("sluice.PolicyWatcher: already started")
        if _under_gevent():
            import gevent
            self._runner = gevent.spawn(self._loop)
        else:
            self._runner = threading.Thread(target=self._loop, name="sluice-policy-watcher",
                                            daemon=True)
            self._runner.start()
        return self

    async def run_async(self) -> None:
        """Watches from the running asyncio loop until ``stop()``: await it as a task. The
        file is parsed on the loop (a policy is a few KiB: microseconds)."""
        while not self._stopped.is_set():
            await asyncio.sleep(self._interval)
            if not self._stopped.is_set():
                self.check()

    def stop(self) -> None:
        """Ends the watching; when it returns, no reload is in progress or will happen."""
        self._stopped.set()
        runner = self._runner
        if isinstance(runner, threading.Thread):
            if runner is not threading.current_thread():
                runner.join()
        elif runner is not None:
            import gevent
            if runner is not gevent.getcurrent():
                runner.kill()

    def __enter__(self) -> "PolicyWatcher":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()
