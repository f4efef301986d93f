"""The limiter's script calls on the request path's channel, against a real redis-server:
EVALSHA with keys and arguments, a lost script loaded again once, `start` written before it
returns, a late reply handed to `on_late`, and a script's own error left to its caller."""

from __future__ import annotations

import asyncio

import pytest
from redis.asyncio import Redis
from redis.exceptions import ResponseError

from llmgw.admission import redis_wire
from llmgw.admission.redis_channel import RedisChannel
from llmgw.admission.script_calls import ScriptCalls

ECHO = "return {KEYS[1], ARGV[1], #KEYS, #ARGV}"
RAISE = "return redis.error_reply('refused by the script')"
# Busy for 0.2 s by Redis's own clock, then answers: a reply that comes after its caller left.
BUSY = ("local t = redis.call('TIME') repeat local n = redis.call('TIME') "
        "until (n[1] - t[1]) * 1000000 + (n[2] - t[2]) > 200000 return ARGV[1]")


@pytest.fixture
def writes(monkeypatch) -> list[int]:
    """How many commands each write to Redis carried (the connection itself is real)."""
    sizes: list[int] = []
    real = redis_wire.WireProtocol.write

    def counted(self, batch):
        sizes.append(len(batch))
        return real(self, batch)
    monkeypatch.setattr(redis_wire.WireProtocol, "write", counted)
    return sizes


async def _loads(redis: Redis) -> int:
    stats = await redis.info("commandstats")
    return stats.get("cmdstat_script|load", {}).get("calls", 0)


def _run(port: int, scenario):
    async def main():
        redis = Redis(port=port)
        channel = RedisChannel(f"redis://127.0.0.1:{port}/0", 2.0)
        try:
            return await scenario(redis, channel, ScriptCalls(channel))
        finally:
            await channel.aclose()
            await redis.aclose()
    return asyncio.run(main())


def test_a_script_redis_never_saw_is_loaded_once_and_gets_its_keys_and_args(redis_port):
    async def scenario(redis, channel, scripts):
        script = redis.register_script(ECHO)
        await redis.script_flush()
        before = await _loads(redis)
        out = await asyncio.gather(*[scripts.call(script, [f"k{i}"], [str(i), "x"]) for i in range(5)])
        assert out == [[f"k{i}".encode(), str(i).encode(), 1, 2] for i in range(5)]
        assert await _loads(redis) == before + 1
        assert await scripts.call(script, ["k"], ["again"]) == [b"k", b"again", 1, 1]
        assert await _loads(redis) == before + 1  # loaded now: no more loads
    _run(redis_port, scenario)


def test_a_scripts_own_error_reaches_its_caller_and_loads_nothing(redis_port):
    async def scenario(redis, channel, scripts):
        script = redis.register_script(RAISE)
        await redis.script_load(RAISE)
        before = await _loads(redis)
        with pytest.raises(ResponseError, match="refused by the script"):
            await scripts.call(script, [], [])
        assert await _loads(redis) == before
    _run(redis_port, scenario)


def test_start_writes_its_command_before_it_returns(redis_port, writes):
    async def scenario(redis, channel, scripts):
        script = redis.register_script(ECHO)
        await redis.script_load(ECHO)
        assert await scripts.call(script, ["k"], ["warm"]) == [b"k", b"warm", 1, 1]  # connected
        writes.clear()
        deferred = scripts.call(script, ["k"], ["later"])  # a coroutine: sent once awaited
        pending = scripts.start(script, ["k"], ["now"])
        assert writes == [1]  # on the wire already, before this turn ends
        assert await pending == [b"k", b"now", 1, 1]
        assert await deferred == [b"k", b"later", 1, 1]
    _run(redis_port, scenario)


def test_start_loads_a_lost_script_too(redis_port):
    async def scenario(redis, channel, scripts):
        script = redis.register_script(ECHO)
        await redis.script_flush()
        assert await scripts.start(script, ["k"], ["v"]) == [b"k", b"v", 1, 1]
    _run(redis_port, scenario)


def test_a_reply_after_its_caller_gave_up_goes_to_on_late(redis_port):
    async def scenario(redis, channel, scripts):
        script = redis.register_script(BUSY)
        await redis.script_load(BUSY)
        late = []
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(scripts.call(script, [], ["done"], on_late=late.append), 0.05)
        for _ in range(100):
            if late:
                break
            await asyncio.sleep(0.01)
        assert late == [b"done"]
        assert await scripts.call(redis.register_script(ECHO), ["k"], ["next"]) == [b"k", b"next", 1, 1]
    _run(redis_port, scenario)
