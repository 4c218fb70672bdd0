"""Hostile lifetimes (issue 13): objects used after their owner was replaced and collected,
context managers exited twice, handles alive at interpreter exit, Redis dying or stalling under
live objects, shared-memory regions tampered with.

Every case must return (it checks what it observed itself) or raise a documented exception; none
may crash or hang. A permit or reservation that outlives its limiter keeps it alive: every
operation on it works as if the limiter were still referenced (a permit from ``try_acquire`` does
today), never on freed memory, and never on an unrelated object that reused that memory.
"""

from __future__ import annotations

import asyncio
import gc
import os
import subprocess
import sys
import textwrap

import pytest

import hostile_support as hs
from hostile_support import DOC, RETURNS, CaseFailed

import sluice
from sluice import ConcurrencyLimiter, RateLimiter, TokenBudget, Window

SUITE = hs.Suite(__name__)
YEAR = 366 * 86400.0
REQUEST = b'{"model":"m","messages":[{"role":"user","content":"hello"}]}'
SCOPES = ("process", "host", "cluster")


def scoped(scope: str, **options):
    if scope == "host":
        options["shared_region"] = hs.region_name()
    elif scope == "cluster":
        options.update(redis=sluice.RedisStore(port=hs.redis_port(), command_timeout=0.5),
                       redis_name=hs.rule_name(), local_share=1)
    return options


def add(case_id, fn, expect=RETURNS, covers=(), scope="process", **options):
    SUITE.add(case_id, fn, expect, covers=tuple(covers), redis=scope == "cluster", **options)


# ---- permits outliving their limiter -------------------------------------------------------------

PERMIT_PATHS = {
    "try_acquire": lambda cl: cl.try_acquire("k"),
    "start_result": lambda cl: cl.start("k").result(),
    "acquire": lambda cl: cl.acquire("k"),
    "acquire_async": lambda cl: asyncio.run(cl.acquire_async("k")),
    "try_acquire_async": lambda cl: asyncio.run(cl.try_acquire_async("k")),
}


def _permit_read(permit):
    bool(permit), permit.held, permit.expires_at, permit.decision.allowed  # noqa: B018


def _permit_exit(permit):
    with permit:
        pass


PERMIT_OPS = {
    "release": lambda p: p.release(),
    "renew": lambda p: p.renew(30.0),
    "renew_async": lambda p: asyncio.run(p.renew_async(30.0)),
    "read": _permit_read,
    "exit": _permit_exit,
    "collect": lambda p: None,  # dropped by the case: its destructor releases the slot
}


def _permit_outlives(scope, path, op):
    def run():
        options = scoped(scope, max_keys=64)
        limiter = ConcurrencyLimiter(2, **options)
        permit = PERMIT_PATHS[path](limiter)
        if not permit:
            raise CaseFailed(f"setup: {path} gave no permit")
        # The owner is replaced and collected; a lookalike takes its place (and maybe its memory).
        limiter = None
        gc.collect()
        lookalike = ConcurrencyLimiter(2, **scoped(scope, max_keys=64))
        before = lookalike.in_flight("k")
        PERMIT_OPS[op](permit)
        permit = None
        gc.collect()
        after = lookalike.in_flight("k")
        if after != before:
            raise CaseFailed(f"the permit of a collected limiter changed an unrelated limiter: "
                             f"in_flight {before} -> {after}")
    return run


for _scope in SCOPES:
    for _path in PERMIT_PATHS:
        for _op in PERMIT_OPS:
            add(f"permit_outlives_limiter/{_scope}/{_path}/{_op}", _permit_outlives(_scope, _path, _op),
                covers=("Permit.release", "Permit.renew", "Permit.__exit__", "PendingPermit.result"),
                scope=_scope, repro=f"cl = ConcurrencyLimiter(2{', scope options' if _scope != 'process' else ''}); "
                f"p = <{_path}>('k'); cl = None; gc.collect(); <{_op}>(p)")


# ---- reservations outliving their budget ---------------------------------------------------------

RESERVATION_PATHS = {
    "try_reserve": lambda b: b.try_reserve("k", 100),
    "start_reserve_result": lambda b: b.start_reserve("k", 100).result(),
    "reserve": lambda b: b.reserve("k", 100),
    "reserve_async": lambda b: asyncio.run(b.reserve_async("k", 100)),
}


def _reservation_raise_inside(r):
    try:
        with r:
            raise KeyError("inside")
    except KeyError:
        pass


RESERVATION_OPS = {
    "settle": lambda r: r.settle(300),
    "settle_async": lambda r: asyncio.run(r.settle_async(300)),
    "cancel": lambda r: r.cancel(),
    "read": lambda r: (bool(r), r.pending, r.estimate, r.decision.remaining),
    "exit_raising": _reservation_raise_inside,
    "collect": lambda r: None,
}


def _reservation_outlives(scope, path, op):
    def run():
        budget = TokenBudget([Window(1000, YEAR)], **scoped(scope, max_keys=64))
        reservation = RESERVATION_PATHS[path](budget)
        if not reservation:
            raise CaseFailed(f"setup: {path} reserved nothing")
        budget = None
        gc.collect()
        lookalike = TokenBudget([Window(1000, YEAR)], **scoped(scope, max_keys=64))
        before = lookalike.peek("k").remaining
        RESERVATION_OPS[op](reservation)
        reservation = None
        gc.collect()
        after = lookalike.peek("k").remaining
        if after != before:
            raise CaseFailed(f"the reservation of a collected budget settled against an unrelated "
                             f"budget: remaining {before} -> {after}")
    return run


for _scope in SCOPES:
    for _path in RESERVATION_PATHS:
        for _op in RESERVATION_OPS:
            add(f"reservation_outlives_budget/{_scope}/{_path}/{_op}",
                _reservation_outlives(_scope, _path, _op),
                covers=("Reservation.settle", "Reservation.cancel", "Reservation.__exit__",
                        "PendingReservation.result"),
                scope=_scope, repro=f"b = TokenBudget([Window(1000, YEAR)]); r = <{_path}>('k', 100); "
                f"b = None; gc.collect(); b2 = TokenBudget(same); <{_op}>(r); b2.peek('k')")


# ---- pending results, picks, calls, generators outliving their owner -----------------------------

def _pending_outlives(scope, kind):
    def run():
        if kind == "decision":
            owner = RateLimiter([Window(10, YEAR)], **scoped(scope, max_keys=64))
            pending = owner.start("k")
        elif kind == "permit":
            owner = ConcurrencyLimiter(2, **scoped(scope, max_keys=64))
            pending = owner.start("k")
        else:
            owner = TokenBudget([Window(1000, YEAR)], **scoped(scope, max_keys=64))
            pending = owner.start_reserve("k", 10)
        owner = None
        gc.collect()
        pending.done()
        pending.fileno()
        result = pending.result()
        pending = None
        gc.collect()
        bool(result)
        result = None
        gc.collect()
    return run


for _scope in SCOPES:
    for _kind in ("decision", "permit", "reservation"):
        add(f"pending_outlives_owner/{_scope}/{_kind}", _pending_outlives(_scope, _kind),
            covers=(f"Pending{_kind.capitalize()}.result", f"Pending{_kind.capitalize()}.done",
                    f"Pending{_kind.capitalize()}.fileno"), scope=_scope)


def _pick_outlives(scope, path, op):
    def run():
        options = {"shared_region": hs.region_name()} if scope == "host" else {}
        balancer = sluice.Balancer("prefix_affinity", **options)
        balancer.add_endpoint("a", labels={"url": "u"})
        pick = {"body": lambda: balancer.pick(REQUEST), "model": lambda: balancer.pick(model=""),
                "parsed": lambda: balancer.pick_parsed(sluice.parse_request(REQUEST))}[path]()
        balancer = None
        gc.collect()
        if op == "complete":
            pick.complete(status=200, ttft=0.1, latency=0.2)
            pick.complete(status=500)  # only the first counts
        elif op == "read":
            pick.endpoint_id, pick.labels, pick.label("url"), pick.matched_blocks, pick.completed  # noqa: B018
        elif op == "exit_raising":
            try:
                with pick:
                    raise KeyError("inside")
            except KeyError:
                pass
        pick = None
        gc.collect()
    return run


for _scope in ("process", "host"):
    for _path in ("body", "model", "parsed"):
        for _op in ("complete", "read", "exit_raising", "collect"):
            add(f"pick_outlives_balancer/{_scope}/{_path}/{_op}", _pick_outlives(_scope, _path, _op),
                covers=("Pick.complete", "Pick.label", "Pick.__exit__", "Pick.__enter__"))


def _call_outlives(balanced, op):
    def run():
        clock = sluice.ManualClock()
        targets = [{"name": "a", "model": "m"}, {"name": "b"}]
        if balanced:
            balancer = sluice.Balancer()
            balancer.add_endpoint("e", labels={"url": "u"})
            targets[0]["balancer"] = balancer
            balancer = None
        policy = sluice.FallbackPolicy(targets, clock=clock)
        call = policy.begin()
        policy = clock = targets = None
        gc.collect()
        if op == "next":
            while call.kind == "attempt":
                call.next(status=503, retry_after=0.5)
        elif op == "read":
            (call.kind, call.target, call.model, call.endpoint_id, call.labels, call.delay, call.timeout,
             call.retry, call.failure, call.status, call.message, call.retry_after, call.number)
        elif op == "mark_first_byte":
            call.mark_first_byte()
            call.next(transport="reset")
        call = None
        gc.collect()
    return run


for _balanced in (False, True):
    for _op in ("next", "read", "mark_first_byte", "collect"):
        add(f"fallback_call_outlives_policy/{'balanced' if _balanced else 'plain'}/{_op}",
            _call_outlives(_balanced, _op), covers=("FallbackCall.next", "FallbackCall.mark_first_byte"))


def _stream_outlives_cache(scope):
    def run():
        options = ({"redis": sluice.RedisStore(port=hs.redis_port(), command_timeout=0.5),
                    "redis_name": hs.rule_name()} if scope == "cluster" else {})
        cache = sluice.ResponseCache(**options)
        key = sluice.cache_key(REQUEST)
        stream = cache.stream_or_fetch(key, lambda: [b"data: a\n\n", b"data: b\n\n"])
        first = next(stream)
        cache = None
        gc.collect()
        rest = list(stream)
        if [first] + rest != [b"data: a\n\n", b"data: b\n\n"]:
            raise CaseFailed(f"the stream changed: {[first] + rest}")
        stream = None
        gc.collect()
    return run


for _scope in ("process", "cluster"):
    add(f"stream_outlives_cache/{_scope}", _stream_outlives_cache(_scope),
        covers=("ResponseCache.stream_or_fetch",), scope=_scope)


def _lead_abandoned_by_collection():
    """A leader's generator dropped half-way: the next caller must lead, not wait forever."""
    cache = sluice.ResponseCache()
    key = sluice.cache_key(REQUEST)
    stream = cache.stream_or_fetch(key, lambda: [b"data: a\n\n", b"data: b\n\n"])
    next(stream)
    stream = None
    gc.collect()
    answer = cache.get_or_fetch(key, lambda: b"second leader")
    if answer != b"second leader":
        raise CaseFailed(f"got {answer!r}")


add("lead_abandoned_by_collection", _lead_abandoned_by_collection,
    covers=("ResponseCache.get_or_fetch", "ResponseCache.stream_or_fetch"))


def _dropped_with_replies_in_flight(kind):
    """Objects of a store dropped right after their calls: a Redis reply still on its way may hold
    the last reference, and drop it on the store's own connection thread."""
    def run():
        port = hs.redis_port()
        for i in range(100):
            store = sluice.RedisStore(port=port, command_timeout=0.5)
            rule = hs.rule_name()
            if kind == "cache":
                obj = sluice.ResponseCache(redis=store, redis_name=rule)
                for j in range(5):
                    key = sluice.cache_key(REQUEST, str(j))
                    obj.put(key, b"x" * 1000)
                    obj.erase(key)
                    obj.get_or_fetch(sluice.cache_key(REQUEST, f"f{j}"), lambda: b"y")
            elif kind == "rate_limiter":
                obj = RateLimiter([Window(100, YEAR)], redis=store, redis_name=rule, local_share=1)
                pendings = [obj.start("k") for _ in range(5)]
            elif kind == "concurrency_limiter":
                obj = ConcurrencyLimiter(10, redis=store, redis_name=rule, local_share=1)
                permits = [obj.try_acquire("k") for _ in range(5)]
            else:
                obj = TokenBudget([Window(1000, YEAR)], redis=store, redis_name=rule, local_share=1)
                pendings = [obj.start_reserve("k", 5) for _ in range(5)]
            obj = store = pendings = permits = None  # noqa: F841
    return run


for _kind in ("cache", "rate_limiter", "concurrency_limiter", "token_budget"):
    add(f"cluster_object_dropped_with_replies_in_flight/{_kind}", _dropped_with_replies_in_flight(_kind),
        covers=("RedisStore",), scope="cluster")


# ---- a clock or store dropped by the caller -------------------------------------------------------

CLOCK_USERS = {
    "RateLimiter": lambda c: (RateLimiter([Window.per_second(5)], clock=c), lambda o: o.try_acquire("k")),
    "LeakyBucket": lambda c: (sluice.LeakyBucket(5, clock=c), lambda o: o.try_acquire("k")),
    "ConcurrencyLimiter": lambda c: (ConcurrencyLimiter(1, lease=1.0, clock=c),
                                     lambda o: (o.try_acquire("k").release(), o.reclaim_expired())),
    "TokenBudget": lambda c: (TokenBudget([Window.per_minute(100)], clock=c),
                              lambda o: o.try_reserve("k", 5).settle(3)),
    "Balancer": lambda c: (_balancer_with_endpoint(c), lambda o: o.pick(model="").complete(latency=0.1)),
    "FallbackPolicy": lambda c: (sluice.FallbackPolicy([{"name": "a"}], clock=c),
                                 lambda o: o.begin().next(status=500)),
    "ResponseCache": lambda c: (sluice.ResponseCache(clock=c),
                                lambda o: (o.put(sluice.cache_key(REQUEST), b"x", ttl=1.0),
                                           o.get(sluice.cache_key(REQUEST)))),
}


def _balancer_with_endpoint(clock):
    balancer = sluice.Balancer(clock=clock)
    balancer.add_endpoint("a")
    return balancer


def _clock_dropped(name):
    def run():
        obj, use = CLOCK_USERS[name](sluice.ManualClock(5.0))
        gc.collect()
        use(obj)
        use(obj)
    return run


for _name in CLOCK_USERS:
    add(f"manual_clock_dropped_by_caller/{_name}", _clock_dropped(_name), covers=("ManualClock",))


def _store_dropped():
    limiter = RateLimiter([Window(10, YEAR)], redis=sluice.RedisStore(port=hs.redis_port()),
                          redis_name=hs.rule_name(), local_share=1)
    gc.collect()
    limiter.try_acquire("k")
    pending = limiter.start("k")
    limiter = None
    gc.collect()
    pending.result()


add("redis_store_dropped_by_caller", _store_dropped, covers=("RedisStore",), scope="cluster")


# ---- context managers exited twice, handles used after they are done ------------------------------

def _permit_protocol(scope):
    def run():
        cl = ConcurrencyLimiter(1, **scoped(scope, max_keys=64))
        permit = cl.try_acquire("k")
        with permit as entered:
            entered.__enter__()
        with permit:  # a second time: already released
            pass
        permit.__exit__(None, None, None)
        permit.__exit__(ValueError, ValueError("x"), None)
        permit.__exit__(5, "junk", object())
        permit.release()
        permit.release()
        try:
            permit.renew()
        except sluice.Error:
            pass
        if cl.in_flight("k") != 0:
            raise CaseFailed(f"in_flight {cl.in_flight('k')} after the permit was released")
        if not cl.try_acquire("k"):
            raise CaseFailed("the slot did not come back")
    return run


def _reservation_protocol(scope):
    def run():
        budget = TokenBudget([Window(1000, YEAR)], **scoped(scope, max_keys=64))
        r = budget.try_reserve("k", 100)
        try:
            with r:
                raise KeyError("x")
        except KeyError:
            pass
        with r:  # cancelled already
            pass
        for call in (lambda: r.__exit__(ValueError, ValueError("x"), None), lambda: r.__exit__(5, 5, 5),
                     lambda: r.settle(10), lambda: r.cancel(), lambda: r.settle(10)):
            try:
                call()
            except sluice.Error:
                pass
        remaining = budget.peek("k").remaining
        if remaining != 1000:
            raise CaseFailed(f"a cancelled reservation left remaining {remaining}, not 1000")
        r2 = budget.try_reserve("k", 100)
        r2.settle(50)
        for call in (lambda: r2.settle(50), lambda: r2.cancel(),
                     lambda: r2.__exit__(ValueError, ValueError("x"), None)):
            try:
                call()
            except sluice.Error:
                pass
        remaining = budget.peek("k").remaining
        if remaining != 950:
            raise CaseFailed(f"a settled reservation was settled again: remaining {remaining}, not 950")
    return run


def _pick_protocol():
    balancer = sluice.Balancer()
    balancer.add_endpoint("a")
    pick = balancer.pick(model="")
    with pick as entered:
        entered.__enter__()
    with pick:
        pass
    pick.__exit__(ValueError, ValueError("x"), None)
    pick.__exit__(5, 5, 5)
    pick.complete(status=500)
    pick.complete(status=200)
    (stats,) = balancer.endpoints()
    if stats["in_flight"] != 0 or stats["completions"] != 1:
        raise CaseFailed(f"a pick exited several times counted {stats}")


for _scope in SCOPES:
    add(f"permit_context_exited_twice/{_scope}", _permit_protocol(_scope), DOC,
        covers=("Permit.__enter__", "Permit.__exit__", "Permit.__bool__", "Permit.release"), scope=_scope)
    add(f"reservation_context_exited_twice/{_scope}", _reservation_protocol(_scope), DOC,
        covers=("Reservation.__enter__", "Reservation.__exit__", "Reservation.settle", "Reservation.cancel"),
        scope=_scope)
add("pick_context_exited_twice", _pick_protocol, DOC, covers=("Pick.__enter__", "Pick.__exit__"))


def _value_protocols():
    key = sluice.cache_key(REQUEST)
    for other in (None, 5, "k", object(), b"{}", sluice.cache_key(REQUEST, "x")):
        try:
            if key == other and other is not key:
                raise CaseFailed(f"a CacheKey equals {other!r}")
        except TypeError:
            pass
    hash(key)
    {key: 1}[sluice.cache_key(REQUEST)]
    bool(RateLimiter([Window.per_second(1)]).try_acquire("k"))


add("value_protocols", _value_protocols, DOC, covers=("CacheKey.__eq__", "CacheKey.__hash__", "Decision.__bool__"))


# ---- handles alive at interpreter exit (module globals die in any order) --------------------------

EXIT_SCRIPTS = {
    "permit": "limiter = sluice.ConcurrencyLimiter(2{scope}); permit = limiter.try_acquire('k')",
    "permit_from_acquire": "limiter = sluice.ConcurrencyLimiter(2{scope}); permit = limiter.acquire('k')",
    "permit_from_start": "limiter = sluice.ConcurrencyLimiter(2{scope}); permit = limiter.start('k').result()",
    "reservation": "budget = sluice.TokenBudget([sluice.Window.per_minute(100)]{scope}); r = budget.reserve('k', 5)",
    "pending": "limiter = sluice.RateLimiter([sluice.Window.per_second(5)]{scope}); p = limiter.start('k')",
    "pick": "b = sluice.Balancer(); b.add_endpoint('a'); pick = b.pick(model='')",
    "call": "policy = sluice.FallbackPolicy([{{'name': 'a'}}]); call = policy.begin()",
    "cache_stream": ("cache = sluice.ResponseCache(); "
                     "stream = cache.stream_or_fetch(sluice.cache_key(b'{{}}'), lambda: [b'a', b'b']); next(stream)"),
}
SCOPE_ARGS = {"process": "", "host": ", shared_region={region!r}",
              "cluster": ", redis=sluice.RedisStore(port={port}), redis_name={rule!r}, local_share=1"}


def _at_exit(name, scope):
    def run():
        scope_args = SCOPE_ARGS[scope].format(region=hs.region_name(), rule=hs.rule_name(),
                                              port=os.environ.get(hs.REDIS_PORT_ENV, "1"))
        script = "import sluice\n" + EXIT_SCRIPTS[name].format(scope=scope_args) + "\n"
        done = subprocess.run([sys.executable, "-X", "faulthandler", "-c", script], capture_output=True,
                              timeout=60)
        if done.returncode != 0:
            raise CaseFailed(f"the interpreter exited with status {done.returncode} (a negative status "
                             f"is a signal): {done.stderr.decode(errors='replace')[-800:]}\nscript: {script}")
    return run


for _name in EXIT_SCRIPTS:
    for _scope in (SCOPES if "{scope}" in EXIT_SCRIPTS[_name] else ("process",)):
        add(f"alive_at_interpreter_exit/{_name}/{_scope}", _at_exit(_name, _scope), scope=_scope,
            covers=("PendingPermit.result",))


# ---- Redis dies or stalls under live objects ------------------------------------------------------

def _with_own_redis(action):
    """Runs `action(server, store)` against a redis-server of this case's own."""
    def run():
        sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(hs.HERE)), "benchmarks", "python"))
        from local_redis import LocalRedis

        with LocalRedis() as server:
            store = sluice.RedisStore(port=server.port, command_timeout=0.2, connect_timeout=0.2,
                                      reconnect_interval=0.05)
            try:
                action(server, store)
            finally:
                server.resume() if server._process is not None else None
    return run


def _every_cluster_call(store, tag):
    rl = RateLimiter([Window(10, YEAR)], redis=store, redis_name=f"{tag}-rl", on_failure="deny")
    lb = sluice.LeakyBucket(10, redis=store, redis_name=f"{tag}-lb", local_share=1)
    cl = ConcurrencyLimiter(2, redis=store, redis_name=f"{tag}-cl", on_failure="local", local_share=1)
    tb = TokenBudget([Window(1000, YEAR)], redis=store, redis_name=f"{tag}-tb", on_failure="allow")
    cache = sluice.ResponseCache(redis=store, redis_name=f"{tag}-cache")
    permit = cl.try_acquire("k")
    reservation = tb.try_reserve("k", 10)
    return rl, lb, cl, tb, cache, permit, reservation


def _use_all(objects):
    rl, lb, cl, tb, cache, permit, reservation = objects
    rl.try_acquire("k"), rl.try_acquire("k"), rl.peek("k"), rl.start("k").result()
    lb.try_acquire("k"), lb.start("k").result()
    cl.in_flight("k"), cl.reclaim_expired()
    extra = cl.try_acquire("k")
    if extra:
        extra.release()
    tb.charge("k", 5), tb.peek("k")
    r = tb.try_reserve("k", 5)
    if r:
        r.settle(1)
    key = sluice.cache_key(REQUEST)
    cache.put(key, b"x"), cache.get(key), cache.get_or_fetch(sluice.cache_key(REQUEST, "f"), lambda: b"y")
    for handle, act in ((permit, lambda p: (p.renew(), p.release())),
                        (reservation, lambda r: r.settle(3))):
        if handle:
            try:
                act(handle)
            except sluice.Error:
                pass


def _redis_killed(server, store):
    objects = _every_cluster_call(store, hs.rule_name())
    server.kill()
    _use_all(objects)
    _use_all(objects)


def _redis_paused(server, store):
    objects = _every_cluster_call(store, hs.rule_name())
    server.pause()
    _use_all(objects)
    server.resume()
    _use_all(objects)


add("redis_killed_under_live_objects", _with_own_redis(_redis_killed), DOC,
    covers=("RedisStore",), scope="cluster", idle=15.0)
add("redis_paused_under_live_objects", _with_own_redis(_redis_paused), DOC,
    covers=("RedisStore",), scope="cluster", idle=15.0)


def _async_decide_while_paused(server, store):
    rl = RateLimiter([Window(10, YEAR)], redis=store, redis_name=hs.rule_name(), on_failure="deny")

    async def main():
        server.pause()
        try:
            await asyncio.wait_for(rl.try_acquire_async("k"), 0.05)
        except asyncio.TimeoutError:
            pass
        server.resume()
        await rl.try_acquire_async("k")

    asyncio.run(main())
    rl.try_acquire("k")


add("decide_async_cancelled_while_redis_stalls", _with_own_redis(_async_decide_while_paused), DOC,
    covers=("RateLimiter.decide_async",), scope="cluster", idle=15.0)


# ---- shared-memory regions tampered with ----------------------------------------------------------

def _tampered_region(how):
    def run():
        name = hs.region_name()
        RateLimiter([Window.per_second(5)], max_keys=64, shared_region=name).try_acquire("k")
        path = f"/dev/shm/sluice.{name}"
        size = os.path.getsize(path)
        with open(path, "r+b") as f:
            if how == "truncated":
                f.truncate(0)
            elif how == "half":
                f.truncate(size // 2)
            elif how == "garbage_header":
                f.write(os.urandom(256))
            elif how == "ones":
                f.write(b"\xff" * size)
            elif how == "grown":
                f.truncate(size * 4)
        # An opener may wait (2 s) for a creator still initialising: then it must decide or refuse.
        limiter = RateLimiter([Window.per_second(5)], max_keys=64, shared_region=name)
        limiter.try_acquire("k")
        limiter.try_acquire("other")
    return run


for _how in ("truncated", "half", "garbage_header", "ones", "grown"):
    add(f"shared_region_tampered/{_how}", _tampered_region(_how), DOC,
        covers=("RateLimiter", "remove_shared_region"), idle=8.0)


def _region_reused_by_other_kind():
    name = hs.region_name()
    rl = RateLimiter([Window.per_second(5)], max_keys=64, shared_region=name)
    for make in (lambda: ConcurrencyLimiter(2, max_keys=64, shared_region=name),
                 lambda: TokenBudget([Window.per_second(5)], max_keys=64, shared_region=name),
                 lambda: sluice.LeakyBucket(5, max_keys=64, shared_region=name),
                 lambda: sluice.Balancer(shared_region=name),
                 lambda: RateLimiter([Window.per_second(6)], max_keys=64, shared_region=name),
                 lambda: RateLimiter([Window.per_second(5)], max_keys=65, shared_region=name)):
        try:
            make()
        except sluice.Error:
            pass
    sluice.remove_shared_region(name)
    rl.try_acquire("k")
    RateLimiter([Window.per_second(7)], max_keys=64, shared_region=name).try_acquire("k")


add("shared_region_reused_by_another_kind", _region_reused_by_other_kind, DOC,
    covers=("remove_shared_region", "ConcurrencyLimiter", "TokenBudget", "LeakyBucket", "Balancer"))

hostile_session = hs.session_fixture()


@pytest.mark.parametrize("case_id", SUITE.ids())
def test_lifetime(case_id, hostile_session, request):
    hs.check(__name__, case_id, request)
