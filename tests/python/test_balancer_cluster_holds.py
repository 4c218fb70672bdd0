"""A Balancer's cooldowns and ejections shared by every host through Redis (``redis=``,
``redis_name=``, ``redis_refresh=``), and sluice.dify's key rotation in cluster scope. Two stores
stand for two hosts; a redis-server of the test's own holds what they share. Reads are
asynchronous, so a test waits (bounded) for a hold to show; nothing asserts on time."""

from __future__ import annotations

import math
import subprocess
import sys
import textwrap
import time

import pytest

import sluice
import sluice.dify as dify
from balancer_support import chat_turns, eventually


def _store(port):
    return sluice.RedisStore(port=port, command_timeout=2.0, reconnect_interval=0.02)


def _balancer(port, name="fleet", **kwargs):
    b = sluice.Balancer("round_robin", redis=_store(port), redis_name=name, redis_refresh=0.01,
                        **kwargs)
    for endpoint in ("a", "b", "c"):
        b.add_endpoint(endpoint)
    return b


def _state(b, endpoint):
    return next(e for e in b.endpoints() if e["id"] == endpoint)


def test_a_conversations_next_turn_on_another_host_goes_where_its_last_turn_went(redis_server):
    def host():
        b = sluice.Balancer("prefix_affinity", redis=_store(redis_server.port), redis_name="fleet",
                            redis_refresh=0.01)
        for endpoint in "abcd":
            b.add_endpoint(endpoint)
        return b

    one, two = host(), host()
    where = {}
    for c in range(10):
        pick = one.pick(chat_turns(c, 1))
        where[c] = pick.endpoint_id
        pick.complete(status=200)

    def held(b):
        return sum(e["prefix_blocks"] for e in b.endpoints())

    def two_has_read():
        two.pick().complete(status=200)  # a pick starts a read and replays what came in
        return held(two) == held(one)

    assert eventually(two_has_read)
    for c in range(10):
        pick = two.pick(chat_turns(c, 2))
        assert pick.endpoint_id == where[c]
        assert pick.matched_blocks > 0
        pick.complete(status=200)


def test_round_robin_turns_are_taken_fleet_wide(redis_server):
    # Six hosts that pick once each: drawn from one Redis counter, the turns spread them 2, 2, 2
    # over a, b, c. Alone (no redis=), each host's own cursor starts at "a", and all six go there.
    def picks(fleet):
        hosts = []
        for _ in range(6):
            store = _store(redis_server.port)
            b = sluice.Balancer("round_robin", **({"redis": store, "redis_name": "rr"} if fleet else {}))
            for endpoint in ("a", "b", "c"):
                b.add_endpoint(endpoint)
            store.check()  # its first turn, drawn when it was made, is in
            hosts.append(b)
        chosen = []
        for b in hosts:
            with b.pick() as pick:
                chosen.append(pick.endpoint_id)
        return sorted(chosen)

    assert picks(fleet=True) == ["a", "a", "b", "b", "c", "c"]
    assert picks(fleet=False) == ["a"] * 6


def test_a_cooldown_on_one_host_is_seen_by_another(redis_server):
    one, two = _balancer(redis_server.port), _balancer(redis_server.port)
    one.cooldown("a", 120.0)
    assert eventually(lambda: _state(two, "a")["cooldown_remaining"] > 100)
    picked = {two.pick().endpoint_id for _ in range(20)}
    assert picked == {"b", "c"}
    # a 429 on the second host cools "b" for both, with its reason
    while True:
        pick = two.pick()
        if pick.endpoint_id == "b":
            pick.complete(status=429)
            break
        pick.complete(status=200)
    assert eventually(lambda: _state(one, "b")["cooldown_remaining"] > 50)
    assert _state(one, "b")["cooldown_reason"] == "rate_limited"


def test_restore_and_eject_reach_every_host(redis_server):
    one, two = _balancer(redis_server.port), _balancer(redis_server.port)
    one.eject("c", 300.0)
    one.cooldown("b", 300.0)
    assert eventually(lambda: _state(two, "c")["ejected_remaining"] > 200 and
                       _state(two, "b")["cooldown_remaining"] > 200)
    two.restore("c")
    two.restore("b")
    assert eventually(lambda: _state(one, "c")["ejected_remaining"] == 0 and
                       _state(one, "b")["cooldown_remaining"] == 0)


def test_other_names_share_nothing(redis_server):
    one, other = _balancer(redis_server.port, "one"), _balancer(redis_server.port, "other")
    same = _balancer(redis_server.port, "one")
    one.cooldown("a", 60.0)
    assert eventually(lambda: _state(same, "a")["cooldown_remaining"] > 0)
    other.endpoints()
    time.sleep(0.05)  # reads of "other" come and go: none brings "one"'s hold
    assert _state(other, "a")["cooldown_remaining"] == 0


def test_redis_down_picks_go_on_with_local_holds(redis_server):
    b = _balancer(redis_server.port)
    redis_server.kill()
    b.cooldown("a", 60.0)
    for _ in range(30):
        assert b.pick().endpoint_id in ("b", "c")
    assert _state(b, "a")["cooldown_remaining"] > 50


@pytest.mark.parametrize("kwargs, field", [
    (dict(redis_name="x"), "redis_name"),  # without redis
    (dict(redis="not a store", redis_name="x"), None),
    (dict(redis_name="has space", with_store=True), "redis_name"),
    (dict(redis_name="", with_store=True), "redis_name"),
    (dict(redis_name="x" * 101, with_store=True), "redis_name"),
    (dict(redis_name="x", redis_refresh=0.0, with_store=True), "redis_refresh"),
    (dict(redis_name="x", redis_refresh=-1.0, with_store=True), "redis_refresh"),
    (dict(redis_name="x", redis_refresh=math.nan, with_store=True), "redis_refresh"),
    (dict(redis_name="x", redis_refresh=math.inf, with_store=True), "redis_refresh"),
    (dict(redis_name="x", redis_refresh=61.0, with_store=True), "redis_refresh"),
    (dict(redis_name=None, with_store=True), "redis_name"),
    (dict(redis_name="x\udcff", with_store=True), None),
])
def test_cluster_options_are_checked_by_name(kwargs, field):
    kwargs = dict(kwargs)
    if kwargs.pop("with_store", False):
        kwargs["redis"] = sluice.RedisStore(port=1)
    with pytest.raises((sluice.InvalidArgument, TypeError, UnicodeError)) as raised:
        sluice.Balancer(**kwargs)
    if field is not None:
        assert field in str(raised.value)


# ---- sluice.dify key rotation, cluster scope -------------------------------------------------

_OTHER_HOST = textwrap.dedent("""
    import sys
    import sluice, sluice.dify as dify

    class Config:
        def __init__(self, id):
            self.id, self.name, self.credentials = id, "key " + id, {}

    store = sluice.RedisStore(port=int(sys.argv[1]), command_timeout=2.0)
    dify.configure_key_rotation("cluster", region_prefix=sys.argv[2], redis=store,
                                redis_refresh=0.01)
    manager = dify.LBModelManager("tenant-1", "openai", "llm", "gpt-4o",
                                  [Config("k1"), Config("k2")])
    manager.cooldown(Config("k1"), 90)
    store.check()  # a barrier: the cooldown, sent before it, is in Redis
    print("cooled")
""")


def test_key_rotation_cooldowns_are_shared_across_hosts(redis_server, region):
    """Another "host" (a process with its own region prefix) cools k1 down after a 429; this
    host's managers skip it and its console shows the time left."""
    previous = dify.configure_key_rotation("cluster", region_prefix=region,
                                           redis=_store(redis_server.port), redis_refresh=0.01)
    try:
        class Config:
            def __init__(self, id):
                self.id, self.name, self.credentials = id, f"key {id}", {}

        configs = [Config("k1"), Config("k2")]
        here = dify.LBModelManager("tenant-1", "openai", "llm", "gpt-4o", configs)
        other = subprocess.run([sys.executable, "-c", _OTHER_HOST, str(redis_server.port),
                                region + "-other"], capture_output=True, text=True, timeout=60)
        assert other.returncode == 0, other.stderr
        assert eventually(lambda: here.in_cooldown(configs[0]))
        cooling, seconds = dify.LBModelManager.get_config_in_cooldown_and_ttl(
            "tenant-1", "openai", "llm", "gpt-4o", "k1")
        assert cooling and 80 <= seconds <= 90
        assert {here.fetch_next().id for _ in range(10)} == {"k2"}
        here.restore(configs[0])
        assert eventually(lambda: not here.in_cooldown(configs[0]))
    finally:
        dify.configure_key_rotation(**previous)
        for made in (region + "-other", region + "-other.endpoints"):
            try:
                sluice.remove_shared_region(made)
            except sluice.NotFound:
                pass


def test_key_rotation_cluster_arguments_are_checked():
    with pytest.raises(TypeError, match="redis must be a sluice.RedisStore"):
        dify.configure_key_rotation("cluster", redis="redis://x")
    with pytest.raises(sluice.InvalidArgument, match="redis applies only in cluster scope"):
        dify.configure_key_rotation("host", redis=sluice.RedisStore(port=1))
    for bad in (0, -1, math.nan, math.inf, 61, "1", True, None):
        with pytest.raises(sluice.InvalidArgument, match="redis_refresh"):
            dify.configure_key_rotation("cluster", redis=sluice.RedisStore(port=1),
                                        redis_refresh=bad)
    with pytest.raises(sluice.InvalidArgument, match="steady clock in cluster scope"):
        dify.configure_key_rotation("cluster", redis=sluice.RedisStore(port=1),
                                    clock=sluice.ManualClock())
    with pytest.raises(ValueError, match="key_rotation must be None, process, host or cluster"):
        dify.install(key_rotation="fleet")
