"""ResponseCache's Python helpers: one upstream call for N identical concurrent misses.

``get_or_fetch`` (threads, gevent) and ``get_or_fetch_async`` (asyncio) look the key up; on a
miss, the first caller runs ``fn`` and stores its answer while every other caller missing the
same key waits for it, cooperatively (on an eventfd: gevent's ``wait_read``, ``poll`` for
threads, the asyncio loop's reader). If the leader's ``fn`` raises, the longest-waiting caller
runs its own ``fn`` and the others keep waiting; the exception goes only to the caller whose
``fn`` raised it.

``stream_or_fetch`` (and ``stream_or_fetch_async``) do the same for streamed answers, chunk by
chunk: the leader's chunks reach every waiting caller as they arrive (live tailing), a stored
answer replays as its SSE chunks, and a stored whole answer is converted to them.
"""

from __future__ import annotations

from typing import (Any, AsyncIterable, AsyncIterator, Awaitable, Callable, Iterable, Iterator,
                    List, Union)

from . import _core
from ._errors import Error, StreamBroken
from ._waiting import (EMIT, END, INVOKE, NEXT, OPEN, READABLE, run_plan, run_plan_async,
                       run_stream, run_stream_async)

Answer = Union[bytes, List[bytes]]


class ResponseCache(_core.ResponseCache):
    __doc__ = _core.ResponseCache.__doc__

    def put(self, key: _core.CacheKey, answer: Union[bytes, Iterable[bytes]], *,
            ttl: float = 0.0) -> bool:
        """Stores an answer (bytes, or an iterable of bytes chunks for a streamed one) for
        ``ttl`` seconds (0: default_ttl). False when it was not stored: larger than a shard, or
        turned away by the admission filter in favour of more popular answers."""
        return super().put(key, _as_answer(answer), ttl=ttl)

    def get_as(self, key: _core.CacheKey, *, stream: bool) -> Union[Answer, None]:
        """The stored answer in the form the request asks for: SSE chunks for a streaming
        request, one chat.completion body otherwise, converting if it was stored in the other
        form (``sluice.completion_to_sse`` / ``sluice.sse_to_completion``). None on a miss, or
        when a tool-call answer would need converting."""
        answer = self.get(key)
        if answer is None or isinstance(answer, list) == stream:
            return answer
        try:
            if stream:
                return _core.completion_to_sse(answer)
            return _core.sse_to_completion(answer)
        except Error:
            return None

    def get_or_fetch(self, key: _core.CacheKey, fn: Callable[[], Answer], *, ttl: float = 0.0,
                     store: bool = True, no_cache: bool = False) -> Answer:
        """The stored answer for ``key``, or ``fn()``'s (bytes, or a list of SSE chunks),
        stored for ``ttl`` seconds (0: the default) unless ``store`` is False (no-store).
        ``no_cache`` skips the read (and the merging): ``fn`` runs, and its answer replaces the
        stored one. Identical concurrent misses make one call of ``fn``; the others wait for it
        without blocking the event loop::

            key = sluice.cache_key(body, namespace=tenant)
            answer = cache.get_or_fetch(key, lambda: post_upstream(body))
        """
        if not no_cache:
            fetch = self._fetch(key)
            if fetch.hit is not None:  # the common hit, without a plan's round trips
                return fetch.hit
            return run_plan(_get_or_fetch_plan(self, key, fn, ttl, store, no_cache, fetch))
        return run_plan(_get_or_fetch_plan(self, key, fn, ttl, store, no_cache, None))

    async def get_or_fetch_async(self, key: _core.CacheKey, fn: Callable[[], Awaitable[Answer]],
                                 *, ttl: float = 0.0, store: bool = True,
                                 no_cache: bool = False) -> Any:
        """``get_or_fetch`` for coroutines: ``fn`` is an async function. A hit returns without
        scheduling anything on the loop."""
        if not no_cache:
            fetch = self._fetch(key)
            if fetch.hit is not None:  # the common hit, without a plan or a driver
                return fetch.hit
            return await run_plan_async(
                _get_or_fetch_plan(self, key, fn, ttl, store, no_cache, fetch))
        return await run_plan_async(
            _get_or_fetch_plan(self, key, fn, ttl, store, no_cache, None))

    def stream_or_fetch(self, key: _core.CacheKey, fn: Callable[[], Iterable[bytes]], *,
                        ttl: float = 0.0, store: bool = True,
                        no_cache: bool = False) -> Iterator[bytes]:
        """The answer for ``key`` as SSE chunks, as a generator: the stored chunks (a stored
        whole answer is converted), or ``fn()``'s chunks (``fn`` returns an iterable of bytes,
        such as an HTTP response's SSE events), relayed as they arrive and stored once the
        stream ends (unless ``store`` is False). Identical concurrent misses make one call of
        ``fn``; the other callers tail its chunks live, without blocking the event loop::

            for chunk in cache.stream_or_fetch(key, lambda: post_upstream_stream(body)):
                yield chunk

        If the leader's ``fn`` raises (or its consumer stops early), a caller that already
        relayed some of its chunks gets ``sluice.StreamBroken``; callers that relayed none wait
        for the next leader. ``no_cache`` skips the read and the merging."""
        return run_stream(_stream_or_fetch_plan(self, key, fn, ttl, store, no_cache))

    def stream_or_fetch_async(self, key: _core.CacheKey,
                              fn: Callable[[], AsyncIterable[bytes]], *, ttl: float = 0.0,
                              store: bool = True,
                              no_cache: bool = False) -> AsyncIterator[bytes]:
        """``stream_or_fetch`` for coroutines: ``fn`` returns an async iterable of chunks."""
        return run_stream_async(_stream_or_fetch_plan(self, key, fn, ttl, store, no_cache))

    def _store(self, key: _core.CacheKey, answer: Answer, ttl: float, store: bool) -> Answer:
        if store:
            self.put(key, answer, ttl=ttl)
        return answer

    def _end_stream(self, key, lead, chunks, finished_well, ttl, store) -> None:
        # A stream that did not finish (fn raised, or the consumer stopped) is not an answer: the
        # lead passes on, and the callers that relayed part of it get StreamBroken.
        if lead is None:  # no_cache, or a stored answer that cannot be replayed as a stream
            if finished_well and store:
                self.put(key, chunks, ttl=ttl)
        elif finished_well:
            lead.complete_stream(ttl=ttl, store=store)
        else:
            lead.abandon()


# What _tail returns when the caller has been served in full, and when the stored answer is a
# whole tool-call answer, which cannot be replayed as SSE chunks.
_SERVED = object()
_UNREPLAYABLE = object()


def _get_or_fetch_plan(cache: ResponseCache, key: _core.CacheKey, fn: Callable[[], Any],
                       ttl: float, store: bool, no_cache: bool, fetch: Any):
    """``get_or_fetch``: the stored answer, or the one this caller (as the leader) fetches.
    `fetch` is the key's fetch if the caller started it already."""
    if no_cache:
        return cache._store(key, (yield (INVOKE, fn, ())), ttl, store)
    fetch = yield from _answer_or_lead(fetch if fetch is not None else cache._fetch(key))
    if fetch.hit is not None:
        return fetch.hit
    try:
        answer = _as_answer((yield (INVOKE, fn, ())))
    except BaseException:
        fetch.abandon()
        raise
    fetch.complete(answer, ttl=ttl, store=store)
    return answer


def _stream_or_fetch_plan(cache: ResponseCache, key: _core.CacheKey, fn: Callable[[], Any],
                          ttl: float, store: bool, no_cache: bool):
    """``stream_or_fetch``: emits the stored chunks, the leader's chunks as they arrive, or
    (as the leader) ``fn()``'s chunks, stored once the stream ends."""
    lead = None
    if not no_cache:
        lead = yield from _tail(cache._fetch(key))
        if lead is _SERVED:
            return
        if lead is _UNREPLAYABLE:  # keep the stored answer; stream this one uncached
            lead, store = None, False
    chunks: List[bytes] = []
    finished_well = False
    try:
        source = yield (OPEN, fn, (), "")
        while (chunk := (yield (NEXT, source))) is not END:
            _keep(lead, chunks, chunk)
            yield (EMIT, chunk)
        finished_well = True
    finally:
        cache._end_stream(key, lead, chunks, finished_well, ttl, store)


def _answer_or_lead(fetch: _core._Fetch):
    """A wait plan (sluice._waiting): waits until this caller has the answer or the lead, and
    returns that fetch."""
    while fetch.hit is None and not fetch.is_lead:
        if not fetch.ready():
            yield (READABLE, fetch.fileno())
        fetch = fetch._result()
    return fetch


def _tail(fetch: _core._Fetch):
    """The streamed form of a fetch: emits chunks to relay, waits on READABLE fds, and
    returns _SERVED, _UNREPLAYABLE, or the lead (the caller streams from upstream, appending
    each chunk for the callers tailing it)."""
    sent = 0
    while True:
        hit = fetch.hit
        if hit is not None:
            chunks = _as_chunks(hit)
            if chunks is None:
                return _UNREPLAYABLE
            for chunk in chunks[sent:]:
                yield (EMIT, chunk)
            return _SERVED
        if fetch.is_lead:
            return fetch
        if fetch.is_broken:
            raise StreamBroken("the stream this call was relaying broke off upstream")
        for chunk in fetch.take_chunks():
            sent += 1
            yield (EMIT, chunk)
        if fetch.ready():
            fetch = fetch._result()
        else:
            yield (READABLE, fetch.fileno())


def _as_answer(answer: Any) -> Answer:
    """bytes, or a list of chunks. An iterable is read here, in Python: a generator read inside
    a native call could switch greenlets there (see sluice/_cooperative.py)."""
    if isinstance(answer, (bytes, list)):
        return answer
    if isinstance(answer, (str, bytearray, memoryview)) or not hasattr(answer, "__iter__"):
        raise TypeError("an answer must be bytes or an iterable of bytes chunks, got "
                        f"{type(answer).__name__}")
    return list(answer)


def _keep(lead: Union[_core._Fetch, None], chunks: List[bytes], chunk: bytes) -> None:
    # A leader's chunks go to its flight (which stores them); without one, put() stores them.
    if lead is not None:
        lead.append(chunk)
    else:
        chunks.append(chunk)


def _as_chunks(answer: Answer) -> Union[List[bytes], None]:
    """A stored answer as SSE chunks; None when a whole tool-call answer cannot be converted."""
    if isinstance(answer, list):
        return answer
    try:
        return _core.completion_to_sse(answer)
    except Error:
        return None
