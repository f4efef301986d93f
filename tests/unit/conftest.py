"""Unit-level fixtures: a throwaway redis-server for the pieces that talk to Redis."""

import pytest

from redis_server import start_redis


@pytest.fixture(scope="module")
def redis_port():
    proc, port = start_redis()
    yield port
    proc.terminate()
    proc.wait()
