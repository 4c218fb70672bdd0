import os
import pathlib
import sys
import uuid

import pytest

import sluice

# The throwaway redis-server helper lives with the benchmarks, which use it too.
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2] / "benchmarks" / "python"))

from local_redis import LocalRedis  # noqa: E402


@pytest.fixture
def redis_server():
    with LocalRedis() as server:
        yield server


@pytest.fixture
def region():
    """A shared-memory region name unique to this test, removed afterwards."""
    name = f"pytest-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    yield name
    for made in (name, name + ".endpoints"):  # a Balancer's shared cooldowns: the second
        try:
            sluice.remove_shared_region(made)
        except sluice.NotFound:
            pass
