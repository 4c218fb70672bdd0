"""Host scope from Python: processes on one host share a limit through shared memory."""

import multiprocessing
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

import sluice
from sluice import ConcurrencyLimiter, RateLimiter, Window

LIMIT = 1000
# A 366-day window: spawning processes takes real time, and nothing may refill meanwhile.
YEAR = 366 * 86400.0


def _hammer(name, attempts, results):
    limiter = RateLimiter([Window(LIMIT, YEAR)], max_keys=64, shared_region=name)
    results.put(sum(limiter.allow("tenant-1") for _ in range(attempts)))


@pytest.mark.parametrize("start_method", ["fork", "spawn"])
def test_processes_share_one_limit_exactly(region, start_method):
    ctx = multiprocessing.get_context(start_method)
    results = ctx.Queue()
    workers = [ctx.Process(target=_hammer, args=(region, 600, results)) for _ in range(3)]
    for w in workers:
        w.start()
    admitted = sum(results.get(timeout=60) for _ in workers)
    for w in workers:
        w.join(timeout=60)
        assert w.exitcode == 0
    assert admitted == LIMIT  # 1,800 attempts from 3 processes, one limit
    here = RateLimiter([Window(LIMIT, YEAR)], max_keys=64, shared_region=region)
    assert not here.try_acquire("tenant-1")
    assert here.peek("tenant-1").remaining == 0


def _hold_permit(name, ready):
    cap = ConcurrencyLimiter(1, lease=600.0, max_keys=8, shared_region=name)
    permit = cap.try_acquire("app")
    ready.put(bool(permit))
    while True:
        time.sleep(1)


def test_a_killed_holder_leaves_the_region_usable(region):
    """SIGKILL mid-hold: nothing is left locked; the slot stays leased until its lease ends (the
    expiry itself is tested in C++ with a ManualClock shared by the processes)."""
    ctx = multiprocessing.get_context("spawn")
    ready = ctx.Queue()
    holder = ctx.Process(target=_hold_permit, args=(region, ready))
    holder.start()
    assert ready.get(timeout=60) is True
    os.kill(holder.pid, signal.SIGKILL)
    holder.join(timeout=60)
    cap = ConcurrencyLimiter(1, lease=600.0, max_keys=8, shared_region=region)
    assert cap.in_flight("app") == 1
    refused = cap.try_acquire("app")
    assert not refused and refused.decision.reset_after > 500  # freed when the lease ends
    with cap.acquire("another-app") as permit:
        assert permit.held


def test_configuration_mismatch_and_removal(region):
    RateLimiter([Window.per_hour(10)], max_keys=8, shared_region=region)
    with pytest.raises(sluice.FailedPrecondition, match="Every process sharing a region"):
        RateLimiter([Window.per_hour(11)], max_keys=8, shared_region=region)
    with pytest.raises(sluice.InvalidArgument, match="shared_region must be"):
        RateLimiter([Window.per_hour(10)], shared_region="no/slashes")
    sluice.remove_shared_region(region)
    with pytest.raises(sluice.NotFound):
        sluice.remove_shared_region(region)


def test_full_region_raises_capacity_error(region):
    limiter = RateLimiter([Window.per_hour(10)], max_keys=2, shared_region=region)
    assert limiter.try_acquire("a") and limiter.try_acquire("b")
    with pytest.raises(sluice.CapacityError, match="is full"):
        limiter.try_acquire("c")
    assert limiter.try_acquire("a")


def _run_with_small_shm(size, code):
    """Runs Python `code` in a subprocess with its own mount namespace whose /dev/shm is a fresh
    tmpfs of `size`, so the host's /dev/shm is never filled. Needs root, as CI has: fails (never
    skips) where `unshare -m` is not permitted."""
    probe = subprocess.run(["unshare", "-m", "true"], capture_output=True, text=True)
    if probe.returncode != 0:
        pytest.fail(
            "`unshare -m true` failed (rc %d: %s): this test mounts a small tmpfs on /dev/shm in a "
            "private mount namespace and needs root (CAP_SYS_ADMIN), as CI has"
            % (probe.returncode, probe.stderr.strip())
        )
    # unshare -m makes the new namespace's mounts private: the tmpfs never reaches the host.
    script = 'mount -t tmpfs -o size=%s tmpfs /dev/shm && exec "$0" -c "$1"' % size
    return subprocess.run(
        ["unshare", "-m", "sh", "-c", script, sys.executable, textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_default_max_keys_on_dockers_64_mib_shm_is_a_clear_error_not_sigbus():
    """Issue 13: with Docker's default 64 MiB /dev/shm, a RateLimiter with the default max_keys
    (a 64 MiB + 4 KiB region) died of SIGBUS (rc 135) and left a half-made file that broke the
    name for every later process. Now it is a CapacityError naming the region and the bytes,
    nothing is left behind, and a region that fits is then made under the same name."""
    result = _run_with_small_shm(
        "64m",
        """
        import os
        import sluice
        from sluice import RateLimiter, Window

        try:
            RateLimiter([Window.per_minute(600)], shared_region="dify-tenant-rpm")
        except sluice.CapacityError as e:
            message = str(e)
        else:
            raise SystemExit("a 64 MiB + 4 KiB region was made in a 64 MiB /dev/shm")
        assert 'shared_region "dify-tenant-rpm" needs 67112960 bytes' in message, message
        assert "/dev/shm has 67108864 bytes free of 67108864" in message, message
        assert "max_keys" in message and "shm_size" in message, message
        assert os.listdir("/dev/shm") == [], os.listdir("/dev/shm")

        limiter = RateLimiter(
            [Window.per_minute(600)], max_keys=65536, shared_region="dify-tenant-rpm"
        )
        assert limiter.try_acquire("tenant-1")
        assert os.path.getsize("/dev/shm/sluice.dify-tenant-rpm") == 4198400
        print("checked")
        """,
    )
    assert result.returncode == 0, (result.returncode, result.stdout, result.stderr)
    assert result.stdout.strip() == "checked"


def test_a_balancers_routes_region_that_does_not_fit_is_a_clear_error():
    """Issue 15: a prefix strategy in host scope needs a third region (the shared routes, 2 MiB).
    In a /dev/shm with room for the counts and the holds but not for it, Balancer() raises a
    CapacityError naming the routes region and its bytes, leaves no half-made file, and a
    strategy without routes still works under the same name."""
    result = _run_with_small_shm(
        "34400k",  # the counts (33,689,600 bytes) and holds (397,312) fit; the routes do not
        """
        import os
        import sluice

        try:
            sluice.Balancer("prefix_affinity", shared_region="dify-lb")
        except sluice.CapacityError as e:
            message = str(e)
        else:
            raise SystemExit("a routes region was made in a /dev/shm without room for it")
        assert "sluice.Balancer: shared_region: " in message, message
        assert '"dify-lb.routes" needs 2099264 bytes' in message, message
        assert "sluice.dify-lb.routes" not in os.listdir("/dev/shm"), os.listdir("/dev/shm")

        b = sluice.Balancer("least_request", shared_region="dify-lb")
        b.add_endpoint("a")
        b.pick().complete(status=200)
        print("checked")
        """,
    )
    assert result.returncode == 0, (result.returncode, result.stdout, result.stderr)
    assert result.stdout.strip() == "checked"
