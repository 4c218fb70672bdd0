"""Cluster scope when the deployment goes wrong (issue 13), through the existing Python API,
against redis-servers the tests start: fork() while threads are inside sluice, a stalled Redis,
a misconfigured one, and what Peek says of an exhausted key."""

import os
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import time

import pytest

import sluice
from sluice import ConcurrencyLimiter, RateLimiter, Window

YEAR = 366 * 86400.0  # no refill while a test runs


def _store(port, **options):
    options.setdefault("command_timeout", 0.3)
    options.setdefault("reconnect_interval", 0.02)
    return sluice.RedisStore(port=port, **options)


def _eventually(ready, limit=10.0):
    """Polls `ready` for what only a real server's recovery can bring (no window is waited)."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if ready():
            return True
        time.sleep(0.005)
    return ready()


# The child process of the fork test: threads use every kind of object while the main thread
# forks; every child uses every object once and reports. Run in a subprocess, so that a crash (the
# finding: free(): invalid pointer, SIGABRT inside os.fork()) fails the test instead of pytest.
_FORK_SCRIPT = textwrap.dedent("""
    import os, signal, sys, threading, time
    import sluice
    from sluice import ConcurrencyLimiter, LeakyBucket, RateLimiter, TokenBudget, Window

    port, region, forks = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
    year = 366 * 86400.0
    store = sluice.RedisStore(port=port, command_timeout=2.0)
    big = [Window(1 << 40, year)]
    objects = {
        "strict": RateLimiter(big, redis=store, redis_name="py-fork-strict", on_failure="deny"),
        "leased": RateLimiter(big, redis=store, redis_name="py-fork-leased", on_failure="deny",
                              mode="leased", lease_units=5),
        "host": RateLimiter(big, shared_region=region),
        "process": RateLimiter(big),
        "cap": ConcurrencyLimiter(1 << 20, redis=store, redis_name="py-fork-cap", on_failure="deny"),
        "local_cap": ConcurrencyLimiter(1 << 20),
        "tokens": TokenBudget(big, redis=store, redis_name="py-fork-tokens", on_failure="deny"),
        "bucket": LeakyBucket(1_000_000, redis=store, redis_name="py-fork-bucket", on_failure="deny",
                              burst=1 << 30),
    }

    def use(tag):
        failed = []
        for name in ("strict", "leased", "host", "process"):
            if not objects[name].try_acquire("k" + tag):
                failed.append(name)
        for name in ("cap", "local_cap"):
            permit = objects[name].try_acquire("k" + tag)
            if not permit:
                failed.append(name)
            else:
                permit.release()
        reservation = objects["tokens"].try_reserve("k" + tag, 10)
        if not reservation:
            failed.append("tokens")
        else:
            reservation.settle(7)
        if not objects["bucket"].try_acquire("k" + tag).allowed:
            failed.append("bucket")
        return failed

    assert use("warm") == [], use("warm")
    stop = threading.Event()
    thread_failures = []

    def hammer(t):
        i = 0
        while not stop.is_set():
            tag = "%d-%d" % (t, i) if i % 4 == 0 else "%d-hot" % t
            thread_failures.extend(use(tag))
            i += 1

    threads = [threading.Thread(target=hammer, args=(t,)) for t in range(3)]
    for t in threads:
        t.start()
    time.sleep(0.05)  # (only so that the threads are running when the forks begin)
    healthy, failures = 0, []
    for f in range(forks):
        pid = os.fork()
        if pid == 0:
            signal.alarm(30)  # a child that hangs is killed, and counted
            os._exit(0 if use("child-%d" % os.getpid()) == [] else 3)
        deadline = time.monotonic() + 60
        while True:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                break
            if time.monotonic() > deadline:
                os.kill(pid, signal.SIGKILL)
                _, status = os.waitpid(pid, 0)
                break
            time.sleep(0.001)
        if os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0:
            healthy += 1
        else:
            failures.append(status)
    stop.set()
    for t in threads:
        t.join()
    after = use("parent-after")
    print("healthy %d/%d failures %s thread_failures %d after %s"
          % (healthy, forks, failures[:10], len(thread_failures), after))
    sys.exit(0 if healthy == forks and not thread_failures and after == [] else 1)
""")


def test_fork_while_threads_are_inside_every_kind_of_object(redis_server, region):
    result = subprocess.run(
        [sys.executable, "-c", _FORK_SCRIPT, str(redis_server.port), region, "150"],
        capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, (result.stdout, result.stderr[-2000:])
    assert "healthy 150/150" in result.stdout


def test_a_stall_costs_no_slot_longer_than_it_lasts(redis_server):
    cap = ConcurrencyLimiter(2, redis=_store(redis_server.port, command_timeout=0.1),
                             redis_name="py-stall", on_failure="deny")  # lease: 10 minutes
    held = cap.try_acquire("app")
    assert held
    redis_server.pause()
    try:
        assert not cap.try_acquire("app")  # timed out: the failure mode; undone when Redis is back
        held.release()  # kept until Redis can hear it
    finally:
        redis_server.resume()
    assert _eventually(lambda: cap.in_flight("app") == 0)
    assert cap.try_acquire("app") and cap.try_acquire("app")


class _RedisWithArgs:
    """A redis-server with extra arguments (e.g. requirepass), on a free loopback port."""

    def __init__(self, *args):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self._process = subprocess.Popen(
            [shutil.which("redis-server"), "--port", str(self.port), "--bind", "127.0.0.1",
             "--save", "", "--appendonly", "no", *args],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as s:
                    s.sendall(b"PING\r\n")
                    if s.recv(16):
                        return
            except OSError:
                time.sleep(0.02)
        self.close()
        raise RuntimeError("redis-server did not start")

    def close(self):
        self._process.send_signal(signal.SIGTERM)
        self._process.wait(timeout=10)


@pytest.fixture
def redis_with_password():
    server = _RedisWithArgs("--requirepass", "s3cret")
    yield server
    server.close()


def test_a_missing_or_wrong_password_is_not_an_outage_even_with_allow(redis_with_password):
    port = redis_with_password.port
    for store in (_store(port), _store(port, password="wrong")):
        limiter = RateLimiter([Window(1000, YEAR)], redis=store, redis_name="py-auth",
                              on_failure="allow")
        # Fail open is for an unreachable Redis; a misconfigured one admits nothing, and says why.
        with pytest.raises(sluice.PermissionDenied, match="NOAUTH|WRONGPASS"):
            limiter.try_acquire("k")
        with pytest.raises(sluice.PermissionDenied):
            limiter.try_acquire("k")
        assert limiter.failure_mode_decisions == 0
        with pytest.raises(sluice.PermissionDenied):
            store.check(timeout=2.0)
        assert store.stats()["config_errors"] >= 1
    right = RateLimiter([Window(1000, YEAR)], redis=_store(port, password="s3cret"),
                        redis_name="py-auth", on_failure="allow")
    assert right.try_acquire("k")


@pytest.mark.parametrize("scope", ["process", "cluster"])
def test_peek_of_an_exhausted_key_says_refused_and_when(scope, redis_server):
    options = {}
    if scope == "cluster":
        options = dict(redis=_store(redis_server.port), redis_name="py-peek", on_failure="deny")
    limiter = RateLimiter([Window(10, 1.0, burst=10)], **options)
    for _ in range(10):
        assert limiter.try_acquire("k")
    peek = limiter.peek("k")
    assert not peek.allowed
    assert peek.remaining == 0
    assert 0 < peek.retry_after <= 0.1


def test_configuration_errors_are_logged_to_the_sluice_logger(redis_with_password, caplog):
    # The connection thread logs; the message reaches `logging` from the interpreter's thread.
    store = _store(redis_with_password.port, password="wrong")
    limiter = RateLimiter([Window(1000, YEAR)], redis=store, redis_name="py-log", on_failure="deny")
    with caplog.at_level("INFO", logger="sluice"):
        with pytest.raises(sluice.PermissionDenied):
            limiter.try_acquire("k")
        sluice._core._deliver_log_messages()
    errors = [r for r in caplog.records if r.name == "sluice" and r.levelname == "ERROR"]
    assert errors, caplog.records
    assert "WRONGPASS" in errors[0].getMessage()
