"""Cluster scope from Python on the Redis that production runs (issue 18): a Redis Cluster of 3
masters (one seed or a redis+cluster:// URL, a slot migration, a master killed), a Sentinel group
(a SENTINEL FAILOVER), TLS (a CA, a wrong CA, a client certificate), and Dify's REDIS_* settings
against each. Servers come from the fixtures in conftest.py (benchmarks/python/redis_topologies.py).

Exactness runs in forked processes, as production's workers do. The topology changes run their
decisions in a subprocess (gevent greenlets), so that a crash fails the test instead of pytest.
The C++ twin is tests/cpp/admission/cluster_topologies_test.cc.
"""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from types import SimpleNamespace

import pytest

import sluice
from sluice import ConcurrencyLimiter, RateLimiter, Window, dify

from balancer_support import chat_turns, eventually
from redis_topologies import key_slot, local_tls_redis

YEAR = 366 * 86400.0  # no refill while a test runs
KEYS = [f"tenant-{i}" for i in range(30)]  # 30 digests: every master of 3 serves some
CHILDREN, TRIES = 3, 12  # 36 tries per key against limits below 36

# Generous timeouts: a failover makes replies late. A decision waits at most connect + command.
TIMEOUTS = {"command_timeout": 0.5, "connect_timeout": 0.5, "reconnect_interval": 0.05}
LONGEST_CALL = 5.0  # a hang guard (10x the timeouts), not a performance figure


def _across_processes(work, children=CHILDREN, timeout=120):
    """Runs `work()` in `children` forked processes at once; returns what each returned (JSON).
    A child that raises, crashes or outlives `timeout` fails the test."""
    running = []
    for _ in range(children):
        read_end, write_end = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: never returns into pytest
            os.close(read_end)
            code, out = 0, b""
            try:
                signal.alarm(timeout)
                out = json.dumps(work()).encode()
            except BaseException as e:  # noqa: BLE001 - reported to the parent
                code, out = 3, json.dumps({"error": repr(e)}).encode()
            finally:
                os.write(write_end, out)
                os._exit(code)
        os.close(write_end)
        running.append((pid, read_end))
    results = []
    for pid, read_end in running:
        chunks = []
        while True:
            chunk = os.read(read_end, 65536)
            if not chunk:
                break
            chunks.append(chunk)
        os.close(read_end)
        _, status = os.waitpid(pid, 0)
        text = b"".join(chunks).decode()
        assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0, (status, text)
        results.append(json.loads(text))
    return results


# A child's permits, kept until it exits (os._exit runs no destructor): a permit collected when
# work() returns would release its slot while the other children still acquire.
_KEPT: list = []


def _exact_work(make_store, rule, limit, cap):
    """A child's share: every key TRIES times through a strict RateLimiter and a
    ConcurrencyLimiter whose permits it keeps (so the cap binds across the processes)."""

    def work():
        store = make_store()
        limiter = RateLimiter([Window(limit, YEAR)], redis=store, redis_name=f"{rule}-rate",
                              on_failure="deny", local_share=1)
        caps = ConcurrencyLimiter(cap, redis=store, redis_name=f"{rule}-cap", on_failure="deny",
                                  local_share=1)
        admitted = dict.fromkeys(KEYS, 0)
        permitted = dict.fromkeys(KEYS, 0)
        for _ in range(TRIES):
            for key in KEYS:
                admitted[key] += limiter.try_acquire(key).allowed
                permit = caps.try_acquire(key)
                if permit:
                    _KEPT.append(permit)
                    permitted[key] += 1
        return {"admitted": admitted, "permitted": permitted,
                "failure_mode": limiter.failure_mode_decisions + caps.failure_mode_decisions}

    return work


def _check_exact(results, make_store, rule, limit, cap):
    for r in results:
        assert r["failure_mode"] == 0, r
    for key in KEYS:
        assert sum(r["admitted"][key] for r in results) == limit, key
        assert sum(r["permitted"][key] for r in results) == cap, key
    caps = ConcurrencyLimiter(cap, redis=make_store(), redis_name=f"{rule}-cap",
                              on_failure="deny", local_share=1)
    assert [caps.in_flight(key) for key in KEYS] == [cap] * len(KEYS)  # the kept permits


def _sluice_keys(client, rule):
    """sluice's keys of `rule` on one node (the layout: sluice:{<rule>:<digest>}:...)."""
    return list(client.scan_iter(match=f"sluice:{{{rule}:*", count=1000))


def _a_slot_of(cluster, rule):
    """The slot of one of `rule`'s keys, wherever it lives now. A ConcurrencyLimiter's key exists
    only while some slot is held, so this looks again (for at most 10 s) until one is."""
    seen = []

    def found():
        seen[:] = [k for m in cluster.current_masters() for k in _sluice_keys(cluster.client(m), rule)]
        return bool(seen)

    assert eventually(found), rule
    return key_slot(seen[0])


# -- Redis Cluster ------------------------------------------------------------------------------


def _cluster_one_seed(cluster):
    host, port = cluster.seeds[0]
    return sluice.RedisStore(cluster_nodes=[f"{host}:{port}"], **TIMEOUTS)


def _cluster_url(cluster):
    seeds = ",".join(f"{h}:{p}" for h, p in cluster.seeds[:3])
    return sluice.RedisStore.from_url(f"redis+cluster://{seeds}", **TIMEOUTS)


@pytest.mark.parametrize("how", ["one_seed", "url"])
def test_cluster_is_exact_across_processes_on_every_master(redis_cluster, how):
    make_store = {"one_seed": _cluster_one_seed, "url": _cluster_url}[how]

    def store():
        return make_store(redis_cluster)

    store().check(timeout=5.0)
    rule = f"exact-{how}"
    results = _across_processes(_exact_work(store, rule, limit=20, cap=3))
    _check_exact(results, store, rule, limit=20, cap=3)
    # The keys live on every master, each reached through the slot map from one seed.
    masters = redis_cluster.current_masters()
    per_master = [len(_sluice_keys(redis_cluster.client(m), f"{rule}-rate")) for m in masters]
    assert all(n > 0 for n in per_master), per_master
    assert sum(per_master) == len(KEYS)  # one key per tenant (one window)


# The decisions beside a topology change: gevent greenlets deciding in a loop through a strict
# RateLimiter and a ConcurrencyLimiter (permits held across a greenlet switch, then released).
# Protocol with the parent: prints "loaded" once the load runs, waits for a line on stdin (the
# topology is whole again), checks strictness and the permits, prints one JSON line, exits 0.
_LOAD_SCRIPT = textwrap.dedent("""
    import json, logging, sys, time
    import gevent, gevent.socket
    import sluice
    from sluice import ConcurrencyLimiter, RateLimiter, Window

    logged = []  # what sluice logged (its messages reach `logging`), for the report

    class Keep(logging.Handler):
        def emit(self, record):
            if len(logged) < 20:
                logged.append(record.getMessage()[:300])

    logging.getLogger().addHandler(Keep())
    logging.getLogger().setLevel(logging.INFO)
    cfg = json.loads(sys.argv[1])
    year = 366 * 86400.0
    store = sluice.RedisStore(**cfg["store"])
    store.check(timeout=10.0)
    caps = ConcurrencyLimiter(2, redis=store, redis_name=cfg["rule"] + "-cap", on_failure="deny",
                              local_share=1)
    limiter = RateLimiter([Window(10**9, year)], redis=store, redis_name=cfg["rule"] + "-rate",
                          on_failure="deny", local_share=1)
    keys = ["app-%d" % k for k in range(cfg["keys"])]
    state = {"calls": 0, "longest": 0.0, "documented": {}, "undocumented": [], "stop": False}

    def decide(key):
        permit = caps.try_acquire(key)
        if permit:
            gevent.sleep(0)  # another greenlet runs while this one holds the slot
            permit.release()
        limiter.try_acquire(key)

    def worker(g):
        i = 0
        while not state["stop"]:
            started = time.monotonic()
            try:
                decide(keys[(i * cfg["greenlets"] + g) % len(keys)])
            except (TypeError, sluice.Error) as e:  # documented: counted, reported
                name = type(e).__name__
                state["documented"][name] = state["documented"].get(name, 0) + 1
            except Exception as e:  # noqa: BLE001 - undocumented: the test fails
                state["undocumented"].append(repr(e)[:200])
            state["longest"] = max(state["longest"], time.monotonic() - started)
            state["calls"] += 1
            i += 1
            gevent.sleep(0)

    def eventually(ready, limit):
        deadline = time.monotonic() + limit
        while time.monotonic() < deadline:
            if ready():
                return True
            gevent.sleep(0.005)
        return ready()

    workers = [gevent.spawn(worker, g) for g in range(cfg["greenlets"])]
    assert eventually(lambda: state["calls"] > 50, 20), "no load"
    print("loaded", flush=True)
    gevent.socket.wait_read(sys.stdin.fileno(), timeout=120)  # the parent: topology whole again
    sys.stdin.readline()
    recovered_at = time.monotonic()

    def strict_probe():
        before = limiter.failure_mode_decisions
        ok = limiter.try_acquire("probe").allowed and limiter.failure_mode_decisions == before
        return ok and store.stats()["topology_changes"] >= cfg["min_topology_changes"]

    strict = eventually(strict_probe, 20)
    strict_after = time.monotonic() - recovered_at
    calls = state["calls"]
    eventually(lambda: state["calls"] > calls + 50, 10)  # the load runs on after recovery
    state["stop"] = True
    gevent.joinall(workers, timeout=30)
    failure_mode = limiter.failure_mode_decisions + caps.failure_mode_decisions
    for key in keys:  # strict now: no decision goes to the failure mode any more
        limiter.try_acquire(key)
        permit = caps.try_acquire(key)
        if permit:
            permit.release()
    still_growing = limiter.failure_mode_decisions + caps.failure_mode_decisions - failure_mode
    eventually(lambda: all(caps.in_flight(k) == 0 for k in keys), 10)
    leaked = {k: n for k, n in ((k, caps.in_flight(k)) for k in keys) if n}
    print(json.dumps({"strict": strict, "strict_after": strict_after, "calls": state["calls"],
                      "longest": state["longest"], "documented": state["documented"],
                      "undocumented": state["undocumented"][:10], "failure_mode": failure_mode,
                      "still_growing": still_growing, "leaked": leaked, "stats": store.stats(),
                      "workers_done": all(w.dead for w in workers), "logged": logged}),
          flush=True)
""")


class _Load:
    """The load script in a subprocess; `run` waits for it to load, runs `change` (the topology
    change, in the parent, on the fixtures), then lets it check and returns its report."""

    def __init__(self, store, rule, keys=12, greenlets=4, min_topology_changes=0):
        self.cfg = {"store": dict(store, **TIMEOUTS), "rule": rule, "keys": keys,
                    "greenlets": greenlets, "min_topology_changes": min_topology_changes}

    def run(self, change):
        errors = tempfile.TemporaryFile(mode="w+")  # never fills a pipe while the test waits
        proc = subprocess.Popen([sys.executable, "-c", _LOAD_SCRIPT, json.dumps(self.cfg)],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=errors,
                                text=True)
        report = ""
        try:
            assert self._line(proc, 60) == "loaded", self._tail(errors)
            change()
            proc.stdin.write("whole\n")
            proc.stdin.flush()
            report = self._line(proc, 120)
            proc.wait(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        assert proc.returncode == 0, (proc.returncode, report, self._tail(errors))
        return json.loads(report)

    @staticmethod
    def _tail(errors):
        errors.seek(0)
        return errors.read()[-3000:]

    @staticmethod
    def _line(proc, timeout):
        ready, _, _ = select.select([proc.stdout], [], [], timeout)
        assert ready, f"the load script said nothing within {timeout} s"
        return proc.stdout.readline().strip()


def _check_recovered(report):
    assert report["undocumented"] == [], report
    assert report["workers_done"], report
    assert report["strict"], report  # a strict decision again after the change
    assert report["still_growing"] == 0, report  # failure_mode_decisions stopped growing
    assert report["leaked"] == {}, report  # every ConcurrencyLimiter key's in_flight back to 0
    assert report["longest"] < LONGEST_CALL, report  # bounded by the timeouts: no hang


def _cluster_store_keywords(cluster):
    return {"cluster_nodes": [f"{h}:{p}" for h, p in cluster.seeds]}


def test_cluster_balancer_shares_routes_and_in_flight_across_hosts(redis_cluster):
    """A Balancer's cluster state (holds, routes, in-flight sets) on Redis Cluster: every key of
    one redis_name is in one slot, and two hosts see each other's routes and picks."""
    def host():
        b = sluice.Balancer("prefix_affinity", redis=_cluster_one_seed(redis_cluster),
                            redis_name="fleet", redis_refresh=0.01)
        for endpoint in "abcd":
            b.add_endpoint(endpoint)
        return b

    one, two = host(), host()
    where, held = {}, []
    for c in range(8):
        pick = one.pick(chat_turns(c, 1))
        where[c] = pick.endpoint_id
        held.append(pick)  # held: in flight fleet-wide
    def fleet_in_flight(b):
        return sum(e["fleet_in_flight"] for e in b.endpoints())

    def two_has_read():
        two.pick().complete(status=200)
        return (sum(e["prefix_blocks"] for e in two.endpoints()) ==
                sum(e["prefix_blocks"] for e in one.endpoints()) and fleet_in_flight(two) == 8)

    assert eventually(two_has_read)
    for c in range(8):
        pick = two.pick(chat_turns(c, 2))
        assert pick.endpoint_id == where[c]
        pick.complete(status=200)
    for pick in held:
        pick.complete(status=200)
    assert eventually(lambda: (two.pick().complete(status=200), fleet_in_flight(two))[1] == 0)


def test_cluster_slot_migration_mid_run(redis_cluster):
    rule = "migrating"

    def migrate():
        # Move the slots of two of the load's keys (one rate, one cap) to another master.
        moved = 0
        for suffix in ("rate", "cap"):
            slot = _a_slot_of(redis_cluster, f"{rule}-{suffix}")
            source = redis_cluster.master_for_slot(slot)
            target = next(m for m in redis_cluster.current_masters() if m != source)
            redis_cluster.begin_migration(slot, source, target)
            time.sleep(0.2)  # (only so that decisions meet the MIGRATING state)
            moved += redis_cluster.migrate_keys(slot)
            time.sleep(0.2)  # ... and the ASK replies
            redis_cluster.finish_migration(slot)
        assert moved >= 1  # the rate keys at least (a cap key exists only while a slot is held)

    report = _Load(_cluster_store_keywords(redis_cluster), rule).run(migrate)
    print("slot migration:", report)
    _check_recovered(report)
    assert report["stats"]["redirected"] >= 1, report  # ASK / MOVED were followed


# A ConcurrencyLimiter's script names two keys of one slot (the leases ":c" and the tombstones
# ":r", which exists only after a late release). While that slot migrates, a node that holds one
# but not the other answers TRYAGAIN (Redis Cluster specification, "Multi-key operations"), and
# the store takes TRYAGAIN for an outage of the whole store.
# While a slot migrates, a two-key script whose second key exists nowhere yet (a
# ConcurrencyLimiter's tombstones) gets TRYAGAIN: Redis cannot tell "missing" from "moved". That
# costs the migrating key its failure mode for the migration, and nothing else.


def _migrating_cap(cluster, rule):
    """A store (reconnect_interval 5 s, so its outage window outlasts the test's next call), a
    ConcurrencyLimiter holding one permit of `app`, and that key's slot put in MIGRATING."""
    store = sluice.RedisStore(cluster_nodes=[f"{h}:{p}" for h, p in cluster.seeds],
                              command_timeout=0.5, connect_timeout=0.5, reconnect_interval=5.0)
    caps = ConcurrencyLimiter(5, redis=store, redis_name=rule, on_failure="deny", local_share=1)
    held = caps.try_acquire("app")
    assert held and caps.failure_mode_decisions == 0
    slot = _a_slot_of(cluster, rule)
    source = cluster.master_for_slot(slot)
    target = next(m for m in cluster.current_masters() if m != source)
    cluster.begin_migration(slot, source, target)
    return store, caps, held, slot


def test_cluster_a_migrating_key_gets_its_failure_mode_then_strict_again(redis_cluster):
    store, caps, held, slot = _migrating_cap(redis_cluster, "tryagain-cap")
    try:
        permit = caps.try_acquire("app")  # its ":c" is on the source, ":r" nowhere: TRYAGAIN
        assert not permit  # on_failure="deny"
        assert caps.failure_mode_decisions == 1, store.stats()
        assert redis_cluster.migrate_keys(slot) > 0
    finally:
        redis_cluster.finish_migration(slot)
    held.release()
    deadline = time.monotonic() + 10
    while caps.in_flight("app") != 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert caps.in_flight("app") == 0  # the release waited out the migration
    assert caps.try_acquire("app")
    assert caps.failure_mode_decisions == 1


def test_cluster_a_migrating_slot_leaves_other_slots_strict(redis_cluster):
    store, caps, held, slot = _migrating_cap(redis_cluster, "tryagain-cap-2")
    other = RateLimiter([Window(1000, YEAR)], redis=store, redis_name="not-migrating",
                        on_failure="deny", local_share=1)
    try:
        caps.try_acquire("app")  # TRYAGAIN on the migrating slot
        decision = other.try_acquire("elsewhere")  # a slot that is not moving
        assert other.failure_mode_decisions == 0, store.stats()
        assert decision.allowed
    finally:
        redis_cluster.finish_migration(slot)


def test_cluster_master_killed_mid_run(redis_cluster):
    victim = []

    def kill():
        # The master of a shard that holds the load's keys.
        shard = redis_cluster.shard_of_slot(_a_slot_of(redis_cluster, "killed-cap"))
        victim.append(redis_cluster.kill_master(shard))
        redis_cluster.wait_for_failover(timeout=20)

    try:
        report = _Load(_cluster_store_keywords(redis_cluster), "killed").run(kill)
    finally:
        if victim:
            redis_cluster.restart_node(victim[0])  # leave the module's cluster whole
    print("master killed:", report)
    _check_recovered(report)


# -- Sentinel -----------------------------------------------------------------------------------


def _sentinel_keywords(group):
    return {"sentinel_master": group.service,
            "sentinels": [f"{h}:{p}" for h, p in group.sentinels]}


def test_sentinel_is_exact_across_processes(redis_sentinel_group):
    group = redis_sentinel_group

    def store():
        return sluice.RedisStore(**_sentinel_keywords(group), **TIMEOUTS)

    store().check(timeout=5.0)
    results = _across_processes(_exact_work(store, "exact-sentinel", limit=25, cap=4))
    _check_exact(results, store, "exact-sentinel", limit=25, cap=4)


def test_sentinel_failover_mid_run(redis_sentinel_group):
    group = redis_sentinel_group
    group.wait_ready()

    def failover():
        old = group.failover()
        group.wait_for_new_master(old, timeout=20)

    report = _Load(_sentinel_keywords(group), "sentinel-failover",
                   min_topology_changes=1).run(failover)
    print("sentinel failover:", report)
    _check_recovered(report)
    assert report["stats"]["topology_changes"] >= 1, report


# -- TLS ----------------------------------------------------------------------------------------


def test_tls_is_exact_across_processes(redis_tls):
    def store():
        return sluice.RedisStore(port=redis_tls.tls_port, tls=True,
                                 tls_ca_file=redis_tls.files.ca_file, **TIMEOUTS)

    store().check(timeout=5.0)
    results = _across_processes(_exact_work(store, "exact-tls", limit=20, cap=3))
    _check_exact(results, store, "exact-tls", limit=20, cap=3)


def test_tls_wrong_ca_is_a_failed_precondition(redis_tls):
    store = sluice.RedisStore(port=redis_tls.tls_port, tls=True,
                              tls_ca_file=redis_tls.files.other_ca_file, **TIMEOUTS)
    with pytest.raises(sluice.FailedPrecondition, match="certificate verify failed"):
        store.check(timeout=5.0)
    limiter = RateLimiter([Window(10, YEAR)], redis=store, redis_name="tls-wrong-ca",
                          on_failure="allow")
    with pytest.raises(sluice.FailedPrecondition):  # loud, never the failure mode
        limiter.try_acquire("k")
    assert limiter.failure_mode_decisions == 0


def test_tls_client_certificate_required_by_the_server():
    with local_tls_redis(require_client_cert=True) as server:
        files = server.files
        with pytest.raises(sluice.Error):  # no client certificate: refused
            sluice.RedisStore(port=server.tls_port, tls=True, tls_ca_file=files.ca_file,
                              **TIMEOUTS).check(timeout=5.0)
        store = sluice.RedisStore(port=server.tls_port, tls=True, tls_ca_file=files.ca_file,
                                  tls_cert_file=files.client_cert, tls_key_file=files.client_key,
                                  **TIMEOUTS)
        store.check(timeout=5.0)
        limiter = RateLimiter([Window(5, YEAR)], redis=store, redis_name="tls-client-cert",
                              on_failure="deny", local_share=1)
        assert [limiter.try_acquire("k").allowed for _ in range(7)] == [True] * 5 + [False] * 2
        assert limiter.failure_mode_decisions == 0


# -- Dify's settings against the real servers -----------------------------------------------------


def _works(store, rule):
    store.check(timeout=5.0)
    limiter = RateLimiter([Window(3, YEAR)], redis=store, redis_name=rule, on_failure="deny",
                          local_share=1)
    assert [limiter.try_acquire("k").allowed for _ in range(4)] == [True, True, True, False]
    assert limiter.failure_mode_decisions == 0


def test_dify_clusters_settings(redis_cluster):
    config = SimpleNamespace(REDIS_USE_CLUSTERS=True, REDIS_USE_SENTINEL=False,
                             REDIS_CLUSTERS=",".join(f"{h}:{p}" for h, p in redis_cluster.seeds),
                             REDIS_CLUSTERS_PASSWORD=None, REDIS_HOST="ignored", REDIS_PORT=1)
    store = dify.redis_store_from_dify(config, **TIMEOUTS)
    _works(store, "dify-cluster")


def test_dify_sentinel_settings(redis_sentinel_group):
    group = redis_sentinel_group
    config = SimpleNamespace(REDIS_USE_SENTINEL="true", REDIS_USE_CLUSTERS="false",
                             REDIS_SENTINELS=",".join(f"{h}:{p}" for h, p in group.sentinels),
                             REDIS_SENTINEL_SERVICE_NAME=group.service, REDIS_DB=0,
                             REDIS_HOST="ignored", REDIS_PORT=1)
    _works(dify.redis_store_from_dify(config, **TIMEOUTS), "dify-sentinel")


def test_dify_ssl_settings(redis_tls):
    files = redis_tls.files
    config = SimpleNamespace(REDIS_HOST="127.0.0.1", REDIS_PORT=str(redis_tls.tls_port),
                             REDIS_USE_SSL=True, REDIS_SSL_CA_CERTS=files.ca_file,
                             REDIS_SSL_CERT_REQS="CERT_REQUIRED", REDIS_USE_SENTINEL=False,
                             REDIS_USE_CLUSTERS=False)
    _works(dify.redis_store_from_dify(config, **TIMEOUTS), "dify-ssl")
