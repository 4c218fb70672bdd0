"""FallbackPolicy's Python helpers: run a function through the chain of targets.

The native ``_core.FallbackPolicy`` decides (breakers, retry budget, backoff, deadline); these
helpers do the waiting and the calling. They sleep between attempts with the running loop's own
sleep (gevent, asyncio, or plain threads), so a Dify gevent worker never blocks, and they turn the
HTTP client's exceptions into outcomes:

* ``sluice.AttemptFailed`` raised by the function: its fields, as given;
* an exception with ``status_code`` (openai's ``APIStatusError``), or with ``response.status_code``
  (httpx ``HTTPStatusError``, requests ``HTTPError``): that status, the response's Retry-After
  header and body;
* timeouts (``TimeoutError``, and exception classes named ``*Timeout*``): a timeout;
* ``ConnectionResetError``, ``BrokenPipeError``, ``http.client.RemoteDisconnected`` /
  ``IncompleteRead`` and classes named ``*RemoteProtocolError*`` / ``*ReadError*``: a reset;
* other ``OSError`` and classes named ``*Connect*``: a connection failure.

Any other exception is the caller's own bug, not the provider's: it propagates at once.
"""

from __future__ import annotations

import http.client
import time
from typing import Any, AsyncIterator, Callable, Dict, Iterator, Optional

from . import _core
from ._errors import AttemptFailed, Unavailable, error_for
from ._waiting import (EMIT, END, INVOKE, NEXT, OPEN, run_plan, run_plan_async, run_stream,
                       run_stream_async)


# The function run by a policy receives the native call itself as its attempt: it has every field
# the function needs (target, model, endpoint_id, labels, timeout, number, retry), read natively
# when asked for, and no wrapper object is made per attempt.
Attempt = _core.FallbackCall


def _header(headers: Any, name: str) -> Optional[str]:
    if headers is None:
        return None
    try:
        return headers.get(name)
    except AttributeError:
        return None


def _body_of(response: Any) -> bytes:
    for attribute in ("content", "text"):
        try:
            value = getattr(response, attribute, None)
        except Exception:  # an unread streaming body can refuse
            value = None
        if isinstance(value, bytes):
            return value
        if isinstance(value, str):
            return value.encode()
    return b""


def outcome_of(exc: BaseException) -> Optional[Dict[str, Any]]:
    """The outcome (``FallbackCall.next`` keyword arguments) an exception stands for, or None
    when it is not an upstream failure (see the module docstring)."""
    if isinstance(exc, AttemptFailed):
        return {"status": exc.status, "transport": exc.transport, "error_body": exc.error_body,
                "retry_after": exc.retry_after}
    response = getattr(exc, "response", None)
    status = getattr(exc, "status_code", None)
    if not isinstance(status, int):
        status = getattr(response, "status_code", None)
    if isinstance(status, int) and status >= 400:
        outcome: Dict[str, Any] = {"status": status, "error_body": _body_of(response)}
        retry_after = _core.parse_retry_after(_header(getattr(response, "headers", None),
                                                      "retry-after") or "")
        if retry_after is not None:
            outcome["retry_after"] = retry_after
        return outcome
    name = type(exc).__name__
    if isinstance(exc, TimeoutError) or "Timeout" in name:
        return {"transport": "timeout"}
    if isinstance(exc, (ConnectionResetError, BrokenPipeError, http.client.RemoteDisconnected,
                        http.client.IncompleteRead)) or "RemoteProtocolError" in name \
            or "ReadError" in name:
        return {"transport": "reset"}
    if isinstance(exc, OSError) or "Connect" in name:
        return {"transport": "connect"}
    return None


def _outcome_or_reraise(classify: Callable[[BaseException], Optional[dict]],
                        exc: BaseException) -> dict:
    """How the failed attempt ends (``classify(exc)``); re-raises ``exc`` when it is not an
    attempt failure (a bug in ``fn``, or a request no target would accept)."""
    outcome = classify(exc)
    if outcome is None:
        try:
            raise exc
        finally:
            # The traceback holds this frame: dropping `exc` from it breaks the exc -> traceback
            # -> frame -> exc cycle, so the caller's call (and its in-flight count) is released
            # at once, not at the next garbage collection.
            exc = None  # noqa: F841
    return outcome


def _raise_failure(call: Any, last: Optional[BaseException]) -> None:
    """Raises what ends a failed call, chained to the last attempt's exception: the class the
    status table gives the call's status code (sluice._errors.error_for)."""
    if call.status == "fatal" and last is not None:
        raise last  # the provider refused the request itself: the caller wants its error
    error = error_for(call.code)
    if error is Unavailable:
        raise Unavailable(call.message, retry_after=call.retry_after) from last
    raise error(call.message) from last


def _call_plan(policy: "FallbackPolicy", fn: Callable[[Attempt], Any],
               classify: Callable[[BaseException], Optional[dict]], call: Any, delay: float,
               last: Optional[BaseException]):
    """``call`` until an attempt returns (see sluice._waiting for plans), from an attempt whose
    delay is `delay` (< 0: none left); `last` is the previous attempt's exception, if any."""
    try:
        while delay >= 0:
            if delay:
                yield delay
            try:
                result = yield (INVOKE, fn, (call,))
            except GeneratorExit:
                raise  # closed (the task was cancelled): not the attempt's failure
            except BaseException as exc:
                call.next(**_outcome_or_reraise(classify, exc))
                last = exc
                delay = call._next_delay()
                continue
            call._succeed()
            return result
    finally:
        if policy._on_transition is not None:
            policy._publish_transitions()
    _raise_failure(call, last)


def _stream_plan(policy: "FallbackPolicy", fn: Callable[[Attempt], Any], deadline: float,
                 classify: Callable[[BaseException], Optional[dict]], call: Any = None):
    """``stream``: falls back until an attempt yields its first chunk, then relays that
    attempt's chunks; a failure after the first chunk is ``StreamBroken``. `call`: a call
    already begun (a Governor admission's), else one begun on `policy`."""
    if call is None:
        call = policy.begin(deadline)
    last: Optional[BaseException] = None
    while (delay := call._next_delay()) >= 0:
        if delay:
            yield delay
        started = time.monotonic()
        try:
            chunks = yield (OPEN, fn, (call,), "FallbackPolicy.stream_async")
            first = yield (NEXT, chunks)
        except GeneratorExit:
            raise
        except BaseException as exc:
            policy._report(call, **_outcome_or_reraise(classify, exc))
            last = exc
            continue
        if first is END:  # an empty answer is still an answer
            policy._report(call, status=200)
            return
        ttft = time.monotonic() - started
        call.mark_first_byte()  # before the chunk leaves: from here on, no fallback
        yield (EMIT, first)
        try:
            while (chunk := (yield (NEXT, chunks))) is not END:
                yield (EMIT, chunk)
        except GeneratorExit:
            raise  # the consumer stopped reading (or was cancelled): abandoned, not failed
        except BaseException as exc:
            outcome = classify(exc) or {"transport": "reset"}
            policy._report(call, ttft=ttft, **outcome)
            _raise_failure(call, exc)
        policy._report(call, status=200, ttft=ttft)
        return
    _raise_failure(call, last)


class FallbackPolicy(_core.FallbackPolicy):
    """An ordered chain of LLM targets with a circuit breaker each, a retry budget shared by all
    calls, full-jitter backoff that honours Retry-After, and a deadline per call.

    ``targets`` is a list of dicts: ``{"name": ..., "model": ..., "balancer": Balancer,
    "breaker": {...}}`` (only ``name`` is required). Options (seconds for durations):
    ``max_retries_per_target`` (1), ``deadline`` (120), ``attempt_timeout`` (0: none),
    ``backoff_base`` (0.025), ``backoff_max`` (0.25), ``retry_budget_ratio`` (0.2),
    ``retry_budget_min`` (3), ``context_length_target`` (a target's name), ``breaker`` (a dict:
    ``consecutive_failures`` 5, ``failure_ratio`` 0.5, ``slow_call_ratio`` 0, ``slow_call_duration``
    30, ``window`` 10, ``minimum_calls`` 10, ``open_time`` 5, ``open_time_multiplier`` 2,
    ``max_open_time`` 300, ``half_open_probes`` 3), ``actions`` (failure class -> 'retry_same',
    'next_target' or 'fatal'), ``on_breaker_transition`` (called with a dict per breaker state
    change, from the thread or greenlet whose call observed it), ``clock``.

    Example (a Dify-style blocking call, gevent or threads)::

        policy = sluice.FallbackPolicy([{"name": "openai", "model": "gpt-4o"},
                                        {"name": "qwen", "model": "qwen-turbo"}])

        def send(attempt):
            return clients[attempt.target].chat.completions.create(
                model=attempt.model, messages=messages, timeout=attempt.timeout)

        reply = policy.call(send)      # raises sluice.Unavailable when every target failed

    Streaming (falls back only before the first chunk reaches the caller)::

        for chunk in policy.stream(lambda a: clients[a.target].chat.completions.create(
                model=a.model, messages=messages, stream=True)):
            yield chunk
    """

    def __init__(self, targets, *, on_breaker_transition: Optional[Callable[[dict], Any]] = None,
                 **options: Any) -> None:
        super().__init__(list(targets), **options)
        self._on_transition = on_breaker_transition

    def _publish_transitions(self) -> None:
        # Breaker transitions queue up natively; deliver them here, outside any native call.
        for event in self._drain_transitions():
            self._on_transition(event)

    def _report(self, call: Any, **outcome: Any) -> None:
        call.next(**outcome)
        if self._on_transition is not None:
            self._publish_transitions()

    def call(self, fn: Callable[[Attempt], Any], *, deadline: float = 0.0,
             classify: Callable[[BaseException], Optional[dict]] = outcome_of) -> Any:
        """Runs ``fn(attempt)`` through the chain until one attempt returns; returns what it
        returned. A failed attempt must raise (see ``outcome_of`` for what counts; ``classify``
        replaces it). Raises ``sluice.Unavailable`` (every target failed or is open),
        ``sluice.DeadlineExceeded``, or the function's own exception when the provider refused
        the request itself (a 400: another target would refuse it too). Latencies are measured
        natively, on the policy's clock."""
        call = self.begin(deadline)
        delay = call._next_delay()
        if delay != 0:
            return run_plan(_call_plan(self, fn, classify, call, delay, None))
        # The first attempt starts now. Made here rather than through the plan, which would
        # cost a generator's round trips (about 0.4 us) on every call; a failure continues in
        # the plan, which owns the fallback.
        try:
            result = fn(call)
        except BaseException as exc:
            # Nothing here may hold `exc` beyond this block: a frame that does, in the traceback
            # of what is raised, makes a cycle that keeps the call (and the policy's in-flight
            # count) alive until the next garbage collection.
            try:
                call.next(**_outcome_or_reraise(classify, exc))
            except BaseException:
                if self._on_transition is not None:
                    self._publish_transitions()
                raise
            return run_plan(_call_plan(self, fn, classify, call, call._next_delay(), exc))
        call._succeed()
        if self._on_transition is not None:
            self._publish_transitions()
        return result

    async def call_async(self, fn: Callable[[Attempt], Any], *, deadline: float = 0.0,
                         classify: Callable[[BaseException], Optional[dict]] = outcome_of) -> Any:
        """``call`` for coroutines: ``fn`` is an async function; waits with ``asyncio.sleep``."""
        call = self.begin(deadline)
        return await run_plan_async(
            _call_plan(self, fn, classify, call, call._next_delay(), None))

    def stream(self, fn: Callable[[Attempt], Any], *, deadline: float = 0.0,
               classify: Callable[[BaseException], Optional[dict]] = outcome_of
               ) -> Iterator[Any]:
        """Runs ``fn(attempt)``, which returns an iterable of chunks (an SSE stream), through the
        chain, and yields the chunks of the first attempt that produces one. Until that first
        chunk, failures fall back as in ``call``; after it, the stream is committed: a failure
        raises ``sluice.StreamBroken`` and nothing is retried or replayed."""
        return run_stream(_stream_plan(self, fn, deadline, classify))

    def stream_async(self, fn: Callable[[Attempt], Any], *, deadline: float = 0.0,
                     classify: Callable[[BaseException], Optional[dict]] = outcome_of
                     ) -> AsyncIterator[Any]:
        """``stream`` for coroutines: ``fn`` returns an async iterable (or an awaitable of
        one)."""
        return run_stream_async(_stream_plan(self, fn, deadline, classify))
