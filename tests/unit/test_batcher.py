"""ScriptBatcher against a real redis-server: one write per loop turn, each caller its own
result or error, and a Redis that lost its scripts (restart, SCRIPT FLUSH) still answers."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import time

import pytest
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError

from llmgw.admission.batcher import ScriptBatcher
from stacks import free_port

ECHO = "return {KEYS[1], ARGV[1]}"
FAIL_ON_X = "if ARGV[1] == 'x' then return redis.error_reply('bad x') end return ARGV[1]"


@pytest.fixture(scope="module")
def redis_port():
    if not shutil.which("redis-server"):
        pytest.fail("redis-server is required (make test installs it)")
    port = free_port()
    proc = subprocess.Popen(["redis-server", "--port", str(port), "--save", "", "--appendonly", "no"],
                            stdout=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while subprocess.run(["redis-cli", "-p", str(port), "ping"], capture_output=True).stdout != b"PONG\n":
        assert time.monotonic() < deadline, "redis-server did not start"
        time.sleep(0.05)
    yield port
    proc.terminate()
    proc.wait()


def _client(port: int) -> Redis:
    """A client whose pool counts checkouts: one per batch."""
    redis = Redis(port=port, decode_responses=True)
    pool, real = redis.connection_pool, redis.connection_pool.get_connection
    pool.checkouts = 0

    async def counted(*args, **kwargs):
        pool.checkouts += 1
        return await real(*args, **kwargs)
    pool.get_connection = counted
    return redis


def test_calls_of_one_turn_share_one_write_and_get_their_own_results(redis_port):
    async def main():
        redis = _client(redis_port)
        script, batcher = redis.register_script(ECHO), ScriptBatcher(redis)
        await redis.script_load(ECHO)
        checkouts = redis.connection_pool.checkouts
        results = await asyncio.gather(*[batcher.call(script, [f"k{i}"], [str(i)]) for i in range(50)])
        assert results == [[f"k{i}", str(i)] for i in range(50)]
        assert redis.connection_pool.checkouts == checkouts + 1  # one write, 50 replies
        assert await batcher.call(script, ["alone"], ["1"]) == ["alone", "1"]  # a lone call
        assert redis.connection_pool.checkouts == checkouts + 2
        await redis.aclose()
    asyncio.run(main())


def test_an_error_reaches_only_its_caller(redis_port):
    async def main():
        redis = _client(redis_port)
        script, batcher = redis.register_script(FAIL_ON_X), ScriptBatcher(redis)
        out = await asyncio.gather(*[batcher.call(script, [], [a]) for a in ("a", "x", "b")],
                                   return_exceptions=True)
        assert out[0] == "a" and out[2] == "b"
        assert isinstance(out[1], ResponseError) and "bad x" in str(out[1])
        await redis.aclose()
    asyncio.run(main())


def test_scripts_lost_by_redis_are_loaded_again(redis_port):
    async def main():
        redis = _client(redis_port)
        script, batcher = redis.register_script(ECHO), ScriptBatcher(redis)
        for size in (1, 20):
            await redis.script_flush()
            checkouts = redis.connection_pool.checkouts
            out = await asyncio.gather(*[batcher.call(script, ["k"], [str(i)]) for i in range(size)])
            assert out == [["k", str(i)] for i in range(size)]
            # the batch, one SCRIPT LOAD, the batch again: not a load per call
            assert redis.connection_pool.checkouts == checkouts + 3
        await redis.aclose()
    asyncio.run(main())


def test_a_connection_killed_by_a_redis_restart_is_replaced(redis_port):
    async def main():
        redis = _client(redis_port)
        script, batcher = redis.register_script(ECHO), ScriptBatcher(redis)
        assert await batcher.call(script, ["k"], ["1"]) == ["k", "1"]
        await redis.execute_command("CLIENT", "KILL", "TYPE", "normal", "SKIPME", "no")
        assert await batcher.call(script, ["k"], ["2"]) == ["k", "2"]
        await redis.aclose()
    asyncio.run(main())


def test_unreachable_redis_fails_every_caller():
    async def main():
        redis = Redis(port=free_port(), socket_connect_timeout=1)
        script, batcher = redis.register_script(ECHO), ScriptBatcher(redis)
        out = await asyncio.gather(*[batcher.call(script, ["k"], ["1"]) for _ in range(3)],
                                   return_exceptions=True)
        assert all(isinstance(e, (RedisConnectionError, OSError)) for e in out), out
        await redis.aclose()
    asyncio.run(main())


def test_wire_format_matches_redis_py():
    from redis.asyncio.connection import Connection

    from llmgw.admission.batcher import _resp
    for args in [("EVALSHA", "abc", 2, "k1", "clé", b'[1,"x"]'), ("PING",), ("SET", "k", "")]:
        assert _resp(args) == b"".join(Connection().pack_command(*args))
