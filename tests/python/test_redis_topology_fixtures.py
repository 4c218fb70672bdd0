"""The Redis topology fixtures (benchmarks/python/redis_topologies.py) do what they say, proved
with redis-py's own Cluster, Sentinel and TLS clients: later tests of sluice's topologies lean on
them."""

import redis
import pytest
from redis.cluster import ClusterNode, RedisCluster
from redis.sentinel import MasterNotFoundError, Sentinel

from redis.backoff import NoBackoff
from redis.retry import Retry

from redis_topologies import LocalRedisCluster, LocalSentinelGroup, key_slot, local_tls_redis


def no_retry():
    # A refused connection fails at once instead of after redis-py's retries and backoff.
    return Retry(NoBackoff(), 0)


def cluster_client(cluster):
    return RedisCluster(startup_nodes=[ClusterNode(h, p) for h, p in cluster.seeds],
                        decode_responses=True, socket_timeout=2.0)


def test_key_slot_matches_cluster_keyslot(redis_cluster):
    node = redis_cluster.client(0)
    keys = ["", "a", "foo", "user:1000", "{user1000}.following", "{}x", "x{}{y}", "a{b}c{d}",
            "{", "}{z}", "tenant-\u00e9"] + [f"k{i}" for i in range(200)]
    for key in keys:
        assert key_slot(key) == node.execute_command("CLUSTER KEYSLOT", key), key
    assert key_slot("{t1}:a") == key_slot("{t1}:b")


def test_cluster_serves_keys_on_every_master(redis_cluster):
    client = cluster_client(redis_cluster)
    for i in range(300):
        client.set(f"spread:{i}", i)
    assert [client.get(f"spread:{i}") for i in range(300)] == [str(i) for i in range(300)]
    masters = {redis_cluster.master_for_slot(key_slot(f"spread:{i}")) for i in range(300)}
    assert len(masters) == 3
    for m in masters:
        assert redis_cluster.client(m).dbsize() > 0


def test_wrong_master_answers_moved(redis_cluster):
    slot = key_slot("moved-key")
    owner = redis_cluster.master_for_slot(slot)
    wrong = next(m for m in redis_cluster.current_masters() if m != owner)
    with pytest.raises(redis.exceptions.MovedError) as moved:
        redis_cluster.client(wrong).set("moved-key", "v")
    assert str(moved.value) == f"{slot} 127.0.0.1:{redis_cluster.nodes[owner].port}"
    assert redis_cluster.client(owner).set("moved-key", "v")


def test_migration_answers_ask_then_moved(redis_cluster):
    key = "{mig}:k"
    slot = key_slot(key)
    source = redis_cluster.master_for_slot(slot)
    target = next(m for m in redis_cluster.current_masters() if m != source)
    redis_cluster.client(source).set(key, "v")
    redis_cluster.begin_migration(slot, source, target)
    assert redis_cluster.client(source).get(key) == "v"  # not moved yet: the source answers
    assert redis_cluster.migrate_keys(slot) == 1
    with pytest.raises(redis.exceptions.AskError) as ask:
        redis_cluster.client(source).get(key)
    assert str(ask.value) == f"{slot} 127.0.0.1:{redis_cluster.nodes[target].port}"
    assert cluster_client(redis_cluster).get(key) == "v"  # redis-py follows ASK
    redis_cluster.finish_migration(slot)
    assert redis_cluster.master_for_slot(slot) == target
    with pytest.raises(redis.exceptions.MovedError):
        redis_cluster.client(source).get(key)
    assert redis_cluster.client(target).get(key) == "v"


def test_kill_master_promotes_its_replica(redis_cluster):
    client = cluster_client(redis_cluster)
    client.set("{f}:k", "before")
    victim = redis_cluster.kill_master(redis_cluster.shard_of_slot(key_slot("{f}:k")))
    seconds = redis_cluster.wait_for_failover(timeout=15)
    promoted = redis_cluster.master_for_slot(key_slot("{f}:k"))
    assert promoted != victim
    assert redis_cluster.client(promoted).info("replication")["role"] == "master"
    assert seconds > 0
    assert client.set("{f}:k", "after") and client.get("{f}:k") == "after"
    redis_cluster.restart_node(victim)  # leave the module's cluster whole
    assert redis_cluster.client(victim).info("replication")["role"] == "slave"


def test_password_cluster_forms_and_fails_over():
    with LocalRedisCluster(masters=3, replicas_per_master=1, password="s3cret") as cluster:
        with pytest.raises(redis.exceptions.AuthenticationError):
            redis.Redis(port=cluster.nodes[0].port, retry=no_retry()).ping()
        victim = cluster.kill_master(0)
        cluster.wait_for_failover(timeout=15)
        assert cluster.master_for_slot(0) != victim


def test_sentinel_failover_changes_the_reported_master(redis_sentinel_group):
    group = redis_sentinel_group
    sentinel = Sentinel(group.sentinels, socket_timeout=2.0)
    assert sentinel.discover_master(group.service) == ("127.0.0.1", group.master_port)
    master = sentinel.master_for(group.service, socket_timeout=2.0)
    master.set("s", "1")
    old = group.failover()
    group.wait_for_new_master(old, timeout=15)
    assert group.master_port != old
    assert sentinel.discover_master(group.service) == ("127.0.0.1", group.master_port)
    assert master.set("s", "2")  # redis-py asks the sentinels again


def test_sentinel_kill_master_elects_the_replica(redis_sentinel_group):
    group = redis_sentinel_group
    group.wait_ready()  # a replica demoted by an earlier failover is attached again
    replica = group.replica_port
    old = group.kill_master()
    group.wait_for_new_master(old, timeout=15)
    assert group.master_port == replica
    group.restart_data_node(old)  # the sentinels turn it into a replica of the new master


def test_sentinel_passwords():
    with LocalSentinelGroup(sentinels=3, password="data-pw",
                            sentinel_password="sentinel-pw") as group:
        with pytest.raises(MasterNotFoundError, match="AuthenticationError"):
            Sentinel(group.sentinels, sentinel_kwargs={"socket_timeout": 2.0, "retry": no_retry()}
                     ).discover_master(group.service)
        sentinel = Sentinel(group.sentinels, sentinel_kwargs={"password": "sentinel-pw"},
                            socket_timeout=2.0, password="data-pw")
        assert sentinel.master_for(group.service).set("k", "v")


def test_tls_server_verifies_with_its_ca_and_refuses_another(redis_tls):
    files = redis_tls.files
    for host in ("127.0.0.1", "localhost"):  # the SAN names both
        assert redis.Redis(host=host, port=redis_tls.tls_port, ssl=True,
                           ssl_ca_certs=files.ca_file).ping()
    with pytest.raises(redis.exceptions.ConnectionError, match="CERTIFICATE_VERIFY_FAILED"):
        redis.Redis(port=redis_tls.tls_port, ssl=True, ssl_ca_certs=files.other_ca_file,
                    retry=no_retry()).ping()
    assert redis.Redis(port=redis_tls.port).ping()  # the plain port stays open


def test_tls_server_can_require_a_client_certificate():
    with local_tls_redis(require_client_cert=True) as server:
        files = server.files
        with pytest.raises(redis.exceptions.ConnectionError):
            redis.Redis(port=server.tls_port, ssl=True, ssl_ca_certs=files.ca_file,
                        retry=no_retry()).ping()
        assert redis.Redis(port=server.tls_port, ssl=True, ssl_ca_certs=files.ca_file,
                           ssl_certfile=files.client_cert, ssl_keyfile=files.client_key).ping()
