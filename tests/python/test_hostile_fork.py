"""Hostile fork() (issue 13): objects made in a parent, used in a fork()ed child -- as a Gunicorn
worker inherits whatever the master made before it forked. Every scope: process, host (a region
unique to the case) and cluster (the session's redis-server; the store documents that it
survives fork()).

Each case builds its objects, takes what a request would hold (a permit, a reservation, a pending
decision, a pick, a fallback call, a cache lead), forks, and runs calls in the child. The child
must return or raise a documented exception within its time limit; the parent must keep working
after the child is gone.
"""

from __future__ import annotations

import gc

import pytest

import hostile_support as hs
from hostile_support import RETURNS, CaseFailed

import sluice
from sluice import ConcurrencyLimiter, LeakyBucket, RateLimiter, TokenBudget, Window

SUITE = hs.Suite(__name__)
YEAR = 366 * 86400.0
REQUEST = b'{"model":"m","messages":[{"role":"user","content":"hello"}]}'
SCOPES = ("process", "host", "cluster")
CHILD_SECONDS = 20.0


def scoped(scope: str, **options):
    if scope == "host":
        options["shared_region"] = hs.region_name()
    elif scope == "cluster":
        options.update(redis=sluice.RedisStore(port=hs.redis_port(), command_timeout=0.5),
                       redis_name=hs.rule_name(), local_share=1)
    return options


def in_child_then_parent(child, parent=None):
    """Runs `child()` in a fork()ed child (it must return or raise a documented exception), then
    `parent()` here."""
    hs.expect_forked(child, CHILD_SECONDS)
    if parent is not None:
        parent()


def add(case_id, fn, covers, scope="process"):
    SUITE.add(case_id, fn, RETURNS, covers=tuple(covers), redis=scope == "cluster", timeout=90.0)


# ---- each admission object, used on both sides of a fork ------------------------------------------

def _rate_limiter(scope):
    def run():
        rl = RateLimiter([Window(100, YEAR)], **scoped(scope, max_keys=64))
        rl.try_acquire("k")
        pending = rl.start("k")  # in flight at fork time (cluster: a reply on its way)

        def child():
            pending.result()
            rl.try_acquire("k"), rl.try_acquire("k"), rl.peek("k"), rl.start("k").result(), rl.drop_idle_keys()
            rl.acquire("k")

        in_child_then_parent(child, lambda: (rl.try_acquire("k"), rl.acquire("k")))
    return run


def _leaky_bucket(scope):
    def run():
        bucket = LeakyBucket(1000, **scoped(scope, max_keys=64))
        bucket.try_acquire("k")

        def child():
            bucket.try_acquire("k"), bucket.start("k").result(), bucket.acquire("k"), bucket.drop_idle_keys()

        in_child_then_parent(child, lambda: bucket.acquire("k"))
    return run


def _concurrency(scope):
    def run():
        cl = ConcurrencyLimiter(2, **scoped(scope, max_keys=64))
        held = cl.try_acquire("k")  # a request in flight in the parent at fork time

        def child():
            held.renew()
            held.release()  # the parent's permit, released by the child
            permit = cl.try_acquire("k")
            cl.in_flight("k"), cl.reclaim_expired()
            if permit:
                permit.release()
            cl.acquire("k").release()

        def parent():
            held.release()
            permit = cl.try_acquire("k")
            if not permit:
                raise CaseFailed(f"the parent lost its slots after the child: in_flight {cl.in_flight('k')}")
            permit.release()

        in_child_then_parent(child, parent)
    return run


def _token_budget(scope):
    def run():
        budget = TokenBudget([Window(1000, YEAR)], **scoped(scope, max_keys=64))
        held = budget.try_reserve("k", 100)
        pending = budget.start_reserve("k", 10)

        def child():
            held.settle(50)  # the parent's reservation, settled by the child
            pending.result()
            budget.charge("k", 5), budget.peek("k"), budget.start_charge("k", 1).result()
            budget.reserve("k", 10).cancel()

        in_child_then_parent(child, lambda: (held.settle(60), budget.peek("k"), budget.reserve("k", 1)))
    return run


OBJECTS = {"RateLimiter": _rate_limiter, "LeakyBucket": _leaky_bucket,
           "ConcurrencyLimiter": _concurrency, "TokenBudget": _token_budget}
for _scope in SCOPES:
    for _name, _make in OBJECTS.items():
        add(f"fork/{_scope}/{_name}", _make(_scope), covers=(_name,), scope=_scope)


def _store_shared_across_fork():
    store = sluice.RedisStore(port=hs.redis_port(), command_timeout=0.5)
    rule = hs.rule_name()
    rl = RateLimiter([Window(100, YEAR)], redis=store, redis_name=rule, local_share=1)
    rl.try_acquire("k")

    def child():
        RateLimiter([Window(100, YEAR)], redis=store, redis_name=rule + "-child", local_share=1).try_acquire("k")
        rl.try_acquire("k")
        store.stats()

    for _ in range(3):  # several children, one after another
        hs.expect_forked(child, CHILD_SECONDS)
    decision = rl.try_acquire("k")
    if decision.remaining != 100 - 5:
        raise CaseFailed(f"after 3 children deciding once each, remaining is {decision.remaining}, not 95")


add("fork/cluster/RedisStore_used_by_children", _store_shared_across_fork, covers=("RedisStore",),
    scope="cluster")


# ---- the balancer, the fallback policy, the cache -------------------------------------------------

def _balancer(scope):
    def run():
        options = {"shared_region": hs.region_name()} if scope == "host" else {}
        balancer = sluice.Balancer("prefix_affinity", **options)
        balancer.add_endpoint("a", labels={"url": "u"})
        balancer.add_endpoint("b")
        pick = balancer.pick(REQUEST)

        def child():
            pick.complete(status=200, latency=0.1)
            with balancer.pick(REQUEST) as other:
                other.label("url")
            balancer.update_metrics("a", "vllm:num_requests_waiting 1\n")
            balancer.endpoints()

        def parent():
            pick.complete(status=200)
            balancer.pick(model="").complete()
            in_flight = sum(e["in_flight"] for e in balancer.endpoints())
            if in_flight != 0:
                raise CaseFailed(f"in_flight {in_flight} after every pick completed")

        in_child_then_parent(child, parent)
    return run


for _scope in ("process", "host"):
    add(f"fork/{_scope}/Balancer", _balancer(_scope), covers=("Balancer", "Pick.complete"))


def _fallback_call():
    policy = sluice.FallbackPolicy([{"name": "a"}, {"name": "b"}], backoff_base=0.001, backoff_max=0.002)
    call = policy.begin()  # a call under way at fork time

    def child():
        while call.kind == "attempt":
            call.next(status=503)
        policy.call(lambda attempt: "ok")
        policy.targets()

    in_child_then_parent(child, lambda: (call.next(status=200), policy.call(lambda attempt: "ok")))


add("fork/process/FallbackPolicy", _fallback_call, covers=("FallbackPolicy", "FallbackCall.next"))


def _cache(scope):
    def run():
        options = ({"redis": sluice.RedisStore(port=hs.redis_port(), command_timeout=0.5),
                    "redis_name": hs.rule_name()} if scope == "cluster" else {})
        cache = sluice.ResponseCache(**options)
        cache.put(sluice.cache_key(REQUEST), b"stored")

        def child():
            cache.get(sluice.cache_key(REQUEST))
            cache.get_or_fetch(sluice.cache_key(REQUEST, "child"), lambda: b"x")
            list(cache.stream_or_fetch(sluice.cache_key(REQUEST, "child-stream"), lambda: [b"data: x\n\n"]))
            cache.stats()

        in_child_then_parent(child, lambda: cache.get_or_fetch(sluice.cache_key(REQUEST, "parent"),
                                                               lambda: b"y"))
    return run


for _scope in ("process", "cluster"):
    add(f"fork/{_scope}/ResponseCache", _cache(_scope), covers=("ResponseCache",), scope=_scope)


def _cache_lead_in_flight(scope):
    """The parent leads a fetch (a streamed answer half relayed) when it forks: in the child, the
    leader is a copy that nobody runs. A child asking for the same key must still get an answer
    (or a documented error), not wait for a leader that does not exist there."""
    def run():
        options = ({"redis": sluice.RedisStore(port=hs.redis_port(), command_timeout=0.5),
                    "redis_name": hs.rule_name()} if scope == "cluster" else {})
        cache = sluice.ResponseCache(**options)
        key = sluice.cache_key(REQUEST, "in-flight")
        stream = cache.stream_or_fetch(key, lambda: [b"data: a\n\n", b"data: b\n\n"])
        next(stream)

        def child():
            cache.get_or_fetch(key, lambda: b"child answer")

        in_child_then_parent(child, lambda: list(stream))
    return run


for _scope in ("process", "cluster"):
    add(f"fork/{_scope}/ResponseCache_lead_in_flight", _cache_lead_in_flight(_scope),
        covers=("ResponseCache.get_or_fetch",), scope=_scope)


def _gc_in_child(scope):
    """The child only collects what it inherited (a Gunicorn worker that never touches the
    master's objects): destructors run against the child's copy of every object."""
    def run():
        objects = [RateLimiter([Window(10, YEAR)], **scoped(scope, max_keys=64)),
                   ConcurrencyLimiter(2, **scoped(scope, max_keys=64)),
                   TokenBudget([Window(1000, YEAR)], **scoped(scope, max_keys=64))]
        held = [objects[1].try_acquire("k"), objects[2].try_reserve("k", 5), objects[0].start("k")]

        def child():
            held.clear()
            objects.clear()
            gc.collect()

        in_child_then_parent(child, lambda: (held[0].release(), held[1].settle(1), held[2].result()))
    return run


for _scope in SCOPES:
    add(f"fork/{_scope}/collect_inherited_objects", _gc_in_child(_scope),
        covers=("Permit.release", "Reservation.settle"), scope=_scope)

hostile_session = hs.session_fixture()


@pytest.mark.parametrize("case_id", SUITE.ids())
def test_fork(case_id, hostile_session, request):
    hs.check(__name__, case_id, request)
