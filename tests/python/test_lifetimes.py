"""Objects handed out by sluice keep what they refer to alive, and a wrong argument never crashes.

Each case runs in a fresh interpreter: a crash (SIGSEGV in a use after free, or in pybind11's
keep_alive after a failed argument conversion) fails the case with its signal instead of taking
pytest down.
"""

import subprocess
import sys
import textwrap

import pytest


def run_isolated(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                          text=True, timeout=60)


def assert_clean(result: subprocess.CompletedProcess) -> None:
    assert result.returncode == 0, f"rc={result.returncode}\n{result.stdout}\n{result.stderr}"


# Each of these crashed the interpreter: the bound method carried py::keep_alive<0, 1>, which
# pybind11 runs even after the argument conversion failed (pybind11 PR #6154).
WRONG_TYPES = [
    "sluice.RateLimiter([W.per_second(5)]).start(None)",
    "sluice.RateLimiter([W.per_second(5)]).start('k', 'x')",
    "sluice.LeakyBucket(5).start(None)",
    "sluice.ConcurrencyLimiter(2).try_acquire(None)",
    "sluice.ConcurrencyLimiter(2).try_acquire(1)",
    "sluice.ConcurrencyLimiter(2).start(None)",
    "sluice.ConcurrencyLimiter(2).acquire(None)",
    "sluice.TokenBudget([W.per_minute(100)]).try_reserve(None, 1)",
    "sluice.TokenBudget([W.per_minute(100)]).try_reserve('k', None)",
    "sluice.TokenBudget([W.per_minute(100)]).reserve(None, 1)",
    "sluice.TokenBudget([W.per_minute(100)]).start_reserve('k', 1.5)",
    "sluice.TokenBudget([W.per_minute(100)]).start_charge(None, 1)",
    "sluice.TokenBudget([W.per_minute(100)]).reserve('k', 5)._start_settle('x')",
    "sluice.ConcurrencyLimiter(2).acquire('k')._start_renew('x')",
    "sluice.Balancer().pick(123)",
    "sluice.Balancer().pick_parsed(None)",
    "sluice.ResponseCache()._fetch(None)",
]


@pytest.mark.parametrize("call", WRONG_TYPES)
def test_a_wrong_argument_type_raises_type_error(call):
    assert_clean(run_isolated(f"""
        import sluice
        from sluice import Window as W
        try:
            {call}
        except TypeError:
            pass
        else:
            raise SystemExit("no TypeError")
    """))


def test_a_wrong_argument_type_in_cluster_scope_raises_type_error(redis_server):
    assert_clean(run_isolated(f"""
        import sluice
        store = sluice.RedisStore(port={redis_server.port})
        limiter = sluice.RateLimiter([sluice.Window.per_second(5)], redis=store, redis_name="r", local_share=1)
        for call in (lambda: limiter.try_acquire(None), lambda: limiter.try_acquire(None),
                     lambda: limiter.start(None)):
            try:
                call()
            except TypeError:
                pass
            else:
                raise SystemExit("no TypeError")
    """))


# A config reload replaces a limiter while requests still hold its permits and reservations.
def test_a_permit_keeps_its_limiter_alive():
    assert_clean(run_isolated("""
        import gc, sluice
        limiter = sluice.ConcurrencyLimiter(1)
        permits = [limiter.acquire("k"), limiter.try_acquire("j"),
                   sluice._core.ConcurrencyLimiter.start(limiter, "i").result()]
        pending = limiter.start("h")
        limiter = sluice.ConcurrencyLimiter(1)  # the reload
        gc.collect()
        for permit in permits:
            assert permit.release() is True
        assert pending.result().release() is True
    """))


def test_a_released_permit_of_a_replaced_limiter_frees_the_shared_slot(region):
    # Host scope: the slot lives in shared memory, so the release must still reach it.
    assert_clean(run_isolated(f"""
        import gc, sluice
        limiter = sluice.ConcurrencyLimiter(1, max_keys=8, shared_region="{region}")
        permit = limiter.acquire("k")
        limiter = None
        gc.collect()
        other = sluice.ConcurrencyLimiter(1, max_keys=8, shared_region="{region}")
        assert not other.try_acquire("k")
        permit.release()
        assert other.try_acquire("k")
    """))


def test_a_reservation_settles_against_its_own_budget():
    assert_clean(run_isolated("""
        import gc, sluice
        W = sluice.Window
        budget = sluice.TokenBudget([W.per_minute(100)])
        reservation = budget.reserve("k", 50)
        pending = budget.start_reserve("j", 10)
        old_budget_was = id(budget)
        budget = sluice.TokenBudget([W.per_minute(100)])  # the reload
        gc.collect()
        after = reservation.settle(10)
        assert after.remaining == 90, after           # the old budget: 100 - 10
        assert budget.peek("k").remaining == 100      # the new one is untouched
        assert pending.result().settle(0).remaining == 100
    """))


def test_picks_and_fetches_keep_their_owner_alive():
    assert_clean(run_isolated("""
        import gc, sluice
        balancer = sluice.Balancer()
        balancer.add_endpoint("a")
        pick = balancer.pick(b'{"model": "m", "messages": [{"role": "user", "content": "hi"}]}')
        balancer = None
        gc.collect()
        pick.complete(status=200)
        cache = sluice.ResponseCache()
        fetch = cache._fetch(sluice.cache_key(b'{"a": 1}'))
        cache = None
        gc.collect()
        fetch.complete(b"answer")
    """))
