import os
import pathlib
import sys
import uuid

import pytest

import sluice

# The throwaway redis-server helper lives with the benchmarks, which use it too.
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2] / "benchmarks" / "python"))

from local_redis import LocalRedis  # noqa: E402
from redis_topologies import LocalRedisCluster, LocalSentinelGroup, local_tls_redis  # noqa: E402


@pytest.fixture
def redis_server():
    with LocalRedis() as server:
        yield server


@pytest.fixture(scope="module")
def redis_cluster():
    """3 masters + 1 replica each (see benchmarks/python/redis_topologies.py). Shared by a module:
    a test that kills or migrates must leave it healthy (restart_node, finish_migration)."""
    with LocalRedisCluster(masters=3, replicas_per_master=1) as cluster:
        yield cluster


@pytest.fixture(scope="module")
def redis_sentinel_group():
    """A master, a replica and 3 sentinels watching them (service "mymaster"). Shared by a module:
    after a failover the master is whichever `master_port` says."""
    with LocalSentinelGroup(sentinels=3) as group:
        yield group


@pytest.fixture(scope="module")
def redis_tls():
    """A redis-server with a TLS port (`tls_port`, certs in `files`) beside its plain `port`."""
    with local_tls_redis() as server:
        yield server


@pytest.fixture
def region():
    """A shared-memory region name unique to this test, removed afterwards."""
    name = f"pytest-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    yield name
    for made in (name, name + ".endpoints", name + ".routes"):  # a Balancer's holds and routes
        try:
            sluice.remove_shared_region(made)
        except sluice.NotFound:
            pass
