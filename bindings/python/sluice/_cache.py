"""ResponseCache's Python helpers: one upstream call for N identical concurrent misses.

``get_or_fetch`` (threads, gevent) and ``get_or_fetch_async`` (asyncio) look the key up; on a
miss, the first caller runs ``fn`` and stores its answer while every other caller missing the
same key waits for it, cooperatively (on an eventfd: gevent's ``wait_read``, ``poll`` for
threads, the asyncio loop's reader). If the leader's ``fn`` raises, the longest-waiting caller
runs its own ``fn`` and the others keep waiting; the exception goes only to the caller whose
``fn`` raised it.
"""

from __future__ import annotations

from typing import Any, Awaitable, Callable, List, Union

from . import _core
from ._errors import Error
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
