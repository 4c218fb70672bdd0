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
from ._waiting import wait_readable, wait_readable_async

Answer = Union[bytes, List[bytes]]


class ResponseCache(_core.ResponseCache):
    __doc__ = _core.ResponseCache.__doc__

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
        if no_cache:
            answer = fn()
            if store:
                self.put(key, answer, ttl=ttl)
            return answer
        fetch = self._fetch(key)
        while True:
            hit = fetch.hit
            if hit is not None:
                return hit
            if fetch.is_lead:
                try:
                    answer = fn()
                except BaseException:
                    fetch.abandon()
                    raise
                fetch.complete(answer, ttl=ttl, store=store)
                return answer
            if not fetch.ready():
                wait_readable(fetch.fileno())
            fetch = fetch._result()

    async def get_or_fetch_async(self, key: _core.CacheKey, fn: Callable[[], Awaitable[Answer]],
                                 *, ttl: float = 0.0, store: bool = True,
                                 no_cache: bool = False) -> Any:
        """``get_or_fetch`` for coroutines: ``fn`` is an async function."""
        if no_cache:
            answer = await fn()
            if store:
                self.put(key, answer, ttl=ttl)
            return answer
        fetch = self._fetch(key)
        while True:
            hit = fetch.hit
            if hit is not None:
                return hit
            if fetch.is_lead:
                try:
                    answer = await fn()
                except BaseException:
                    fetch.abandon()
                    raise
                fetch.complete(answer, ttl=ttl, store=store)
                return answer
            if not fetch.ready():
                await wait_readable_async(fetch.fileno())
            fetch = fetch._result()

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
        if no_cache:
            chunks = []
            for chunk in fn():
                chunks.append(chunk)
                yield chunk
            if store:
                self.put(key, chunks, ttl=ttl)
            return
        sent = 0
        fetch = self._fetch(key)
        while True:
            hit = fetch.hit
            if hit is not None:
                chunks = _as_chunks(hit)
                if chunks is None:  # a tool-call answer stored whole: not replayable
                    yield from self.stream_or_fetch(key, fn, ttl=ttl, store=False, no_cache=True)
                    return
                yield from chunks[sent:]
                return
            if fetch.is_lead:
                yield from _lead_stream(fetch, fn(), ttl, store)
                return
            if fetch.is_broken:
                raise StreamBroken("the stream this call was relaying broke off upstream")
            for chunk in fetch.take_chunks():
                sent += 1
                yield chunk
            if fetch.ready():
                fetch = fetch._result()
            else:
                wait_readable(fetch.fileno())

    async def stream_or_fetch_async(self, key: _core.CacheKey,
                                    fn: Callable[[], AsyncIterable[bytes]], *, ttl: float = 0.0,
                                    store: bool = True,
                                    no_cache: bool = False) -> AsyncIterator[bytes]:
        """``stream_or_fetch`` for coroutines: ``fn`` returns an async iterable of chunks."""
        if no_cache:
            chunks = []
            async for chunk in fn():
                chunks.append(chunk)
                yield chunk
            if store:
                self.put(key, chunks, ttl=ttl)
            return
        sent = 0
        fetch = self._fetch(key)
        while True:
            hit = fetch.hit
            if hit is not None:
                chunks = _as_chunks(hit)
                if chunks is None:
                    async for chunk in self.stream_or_fetch_async(key, fn, ttl=ttl, store=False,
                                                                  no_cache=True):
                        yield chunk
                    return
                for chunk in chunks[sent:]:
                    yield chunk
                return
            if fetch.is_lead:
                finished = False
                try:
                    async for chunk in fn():
                        fetch.append(chunk)
                        yield chunk
                    finished = True
                finally:
                    _end_stream(fetch, finished, ttl, store)
                return
            if fetch.is_broken:
                raise StreamBroken("the stream this call was relaying broke off upstream")
            for chunk in fetch.take_chunks():
                sent += 1
                yield chunk
            if fetch.ready():
                fetch = fetch._result()
            else:
                await wait_readable_async(fetch.fileno())


def _as_chunks(answer: Answer) -> Union[List[bytes], None]:
    """A stored answer as SSE chunks; None when a whole tool-call answer cannot be converted."""
    if isinstance(answer, list):
        return answer
    try:
        return _core.completion_to_sse(answer)
    except Error:
        return None


def _lead_stream(fetch: _core._Fetch, chunks: Iterable[bytes], ttl: float,
                 store: bool) -> Iterator[bytes]:
    """Relays the leader's chunks to its caller and, live, to every caller waiting."""
    finished = False
    try:
        for chunk in chunks:
            fetch.append(chunk)
            yield chunk
        finished = True
    finally:
        _end_stream(fetch, finished, ttl, store)


def _end_stream(fetch: _core._Fetch, finished: bool, ttl: float, store: bool) -> None:
    # A stream that did not finish (fn raised, or the consumer stopped) is not an answer: the
    # lead passes on, and the callers that relayed part of it get StreamBroken.
    if finished:
        fetch.complete_stream(ttl=ttl, store=store)
    else:
        fetch.abandon()
