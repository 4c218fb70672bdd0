import pathlib
import sys

import pytest

# The throwaway redis-server helper lives with the benchmarks, which use it too.
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2] / "benchmarks" / "python"))

from local_redis import LocalRedis  # noqa: E402


@pytest.fixture
def redis_server():
    with LocalRedis() as server:
        yield server
