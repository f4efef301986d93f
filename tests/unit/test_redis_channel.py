"""The limiter's Redis channel and script calls against a real redis-server: a turn's first
call at once and the rest in one write, each caller its own reply or error, a Redis that lost its scripts still answers,
a killed connection is replaced, a slow reply fails only its caller (one that came during a long
loop turn does not fail), a long queue that Redis works through is waited out (up to the
calls' patience) while a silent Redis is not, AUTH and SELECT."""

from __future__ import annotations

import asyncio
import socket
import time

import pytest
import uvloop
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError, TimeoutError as RedisTimeoutError

from llmgw.admission import redis_wire
from llmgw.admission.script_calls import ScriptCalls
from llmgw.admission.redis_channel import RedisBusy, RedisChannel
from redis_server import start_redis
from stacks import free_port

ECHO = "return {KEYS[1], ARGV[1]}"
FAIL_ON_X = "if ARGV[1] == 'x' then return redis.error_reply('bad x') end return ARGV[1]"


@pytest.fixture
def writes(monkeypatch) -> list[int]:
    """How many commands each write to Redis carried."""
    sizes: list[int] = []
    real = redis_wire.WireProtocol.write

    def counted(self, batch):
        sizes.append(len(batch))
        return real(self, batch)
    monkeypatch.setattr(redis_wire.WireProtocol, "write", counted)
    return sizes


def _setup(port: int, script_text: str, timeout: float = 2.0):
    redis = Redis(port=port)
    channel = RedisChannel(f"redis://127.0.0.1:{port}/0", timeout)
    return redis, channel, redis.register_script(script_text), ScriptCalls(channel)


async def _script_loads(redis: Redis) -> int:
    stats = await redis.info("commandstats")
    return stats.get("cmdstat_script|load", {}).get("calls", 0)


def test_calls_of_one_turn_share_one_write_and_get_their_own_results(redis_port, writes):
    async def main():
        redis, channel, script, scripts = _setup(redis_port, ECHO)
        await redis.script_load(ECHO)
        results = await asyncio.gather(*[scripts.call(script, [f"k{i}"], [str(i)]) for i in range(50)])
        assert results == [[f"k{i}".encode(), str(i).encode()] for i in range(50)]
        assert writes == [50]  # they waited for the connection together: one write, 50 replies
        assert await scripts.call(script, ["alone"], ["1"]) == [b"alone", b"1"]  # a lone call
        assert writes == [50, 1]
        # Connected: the turn's first call leaves at once, the other 49 together just after.
        results = await asyncio.gather(*[scripts.call(script, [f"k{i}"], [str(i)]) for i in range(50)])
        assert results == [[f"k{i}".encode(), str(i).encode()] for i in range(50)]
        assert writes == [50, 1, 1, 49]
        await channel.aclose()
        await redis.aclose()
    asyncio.run(main())


def test_an_error_reaches_only_its_caller(redis_port):
    async def main():
        redis, channel, script, scripts = _setup(redis_port, FAIL_ON_X)
        out = await asyncio.gather(*[scripts.call(script, [], [a]) for a in ("a", "x", "b")],
                                   return_exceptions=True)
        assert out[0] == b"a" and out[2] == b"b"
        assert isinstance(out[1], ResponseError) and "bad x" in str(out[1])
        await channel.aclose()
        await redis.aclose()
    asyncio.run(main())


def test_scripts_lost_by_redis_are_loaded_again_once(redis_port, writes):
    async def main():
        redis, channel, script, scripts = _setup(redis_port, ECHO)
        for size in (1, 20):
            await redis.script_flush()
            loads, writes[:] = await _script_loads(redis), []
            out = await asyncio.gather(*[scripts.call(script, ["k"], [str(i)]) for i in range(size)])
            assert out == [[b"k", str(i).encode()] for i in range(size)]
            assert await _script_loads(redis) == loads + 1  # not a load per call
            batch = [1, size - 1] if size > 1 else [1]  # the turn's first call, then the rest
            assert writes[:len(batch) + 1] == batch + [1]  # the calls, then one SCRIPT LOAD
            again = writes[len(batch) + 1:]  # then the calls again, as their callers wake
            assert sum(again) == size and len(again) <= 3, writes
        await channel.aclose()
        await redis.aclose()
    asyncio.run(main())


def test_a_connection_killed_by_redis_is_replaced(redis_port):
    async def main():
        redis, channel, script, scripts = _setup(redis_port, ECHO)
        assert await scripts.call(script, ["k"], ["1"]) == [b"k", b"1"]
        await redis.execute_command("CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes")
        assert await scripts.call(script, ["k"], ["2"]) == [b"k", b"2"]
        await channel.aclose()
        await redis.aclose()
    asyncio.run(main())


def test_a_late_reply_fails_only_its_caller_and_the_connection_stays_in_step(redis_port):
    async def main():
        redis, channel, script, scripts = _setup(redis_port, ECHO, timeout=0.1)
        slow = channel.send(("DEBUG", "SLEEP", "0.3"))
        with pytest.raises(RedisTimeoutError) as failed:
            await slow
        assert not isinstance(failed.value, RedisBusy)  # silence: Redis is not answering
        await asyncio.sleep(0.3)  # the late +OK arrives and must not answer the next caller
        assert await channel.send(("ECHO", "after")) == b"after"
        assert await scripts.call(script, ["k"], ["3"]) == [b"k", b"3"]
        await channel.aclose()
        await redis.aclose()
    asyncio.run(main())


def _slow_queue(channel: RedisChannel, n: int, secs: float) -> list[asyncio.Future]:
    """n steps of `secs` each that Redis answers one by one. Redis runs every command that
    one read of a connection brought before it writes any reply, and reads at most 16 KB at a
    time: a 20 KB ECHO before each DEBUG SLEEP makes each step a read of its own, so replies
    flow all along, as they do for a burst of admissions from several workers."""
    calls = []
    for _ in range(n):
        calls += [channel.send(("ECHO", "x" * 20_000)), channel.send(("DEBUG", "SLEEP", secs))]
    return calls


def test_a_call_sent_into_a_silence_fails_after_its_own_time_limit(redis_port):
    """Redis busy for 0.6 s: the first call fails after 0.1 s of silence, and one sent later
    fails 0.1 s after it was sent, not when the connection would count as stuck (1 s)."""
    async def main():
        channel = RedisChannel(f"redis://127.0.0.1:{redis_port}/0", 0.1)
        await channel.send(("PING",))
        with pytest.raises(RedisTimeoutError):
            await channel.send(("DEBUG", "SLEEP", "0.6"))
        await asyncio.sleep(0.1)
        began = time.monotonic()
        with pytest.raises(RedisTimeoutError) as failed:
            await channel.send(("ECHO", "into the silence"))
        assert time.monotonic() - began < 0.3 and not isinstance(failed.value, RedisBusy)
        await asyncio.sleep(0.5)
        assert await channel.send(("ECHO", "after")) == b"after"
        await channel.aclose()
    uvloop.run(main())


def test_a_queue_that_redis_works_through_is_waited_out(redis_port):
    """The last call waits 0.4 s (four time limits) behind a queue that Redis answers all
    the while: not taken for Redis being unreachable, since only silence counts."""
    async def main():
        channel = RedisChannel(f"redis://127.0.0.1:{redis_port}/0", 0.1)
        await channel.send(("PING",))
        queue = _slow_queue(channel, 40, 0.01)
        began = time.monotonic()
        assert await channel.send(("ECHO", "my turn came")) == b"my turn came"
        assert time.monotonic() - began > 0.35
        assert all(isinstance(r, bytes) for r in await asyncio.gather(*queue))
        await channel.aclose()
    uvloop.run(main())


def test_a_queue_longer_than_the_patience_fails_its_tail_as_busy(redis_port):
    """1.5 s of queued work against a patience of 1 s (time limit 0.1 s): the calls whose
    turn would come too late fail with RedisBusy (Redis answers: not an outage), the ones
    before them are answered, and the connection stays in step for the next call."""
    async def main():
        channel = RedisChannel(f"redis://127.0.0.1:{redis_port}/0", 0.1)
        assert channel.patience == 1.0
        await channel.send(("PING",))
        out = await asyncio.gather(*_slow_queue(channel, 150, 0.01), return_exceptions=True)
        answered = [r for r in out if isinstance(r, bytes)]
        busy = [r for r in out if isinstance(r, RedisBusy)]
        assert len(answered) + len(busy) == 300 and 120 <= len(answered) <= 220, out[-1]
        assert out[:len(answered)] == answered  # in order: the head was served, the tail not
        await asyncio.sleep(0.7)  # the rest of the queue drains; its late replies go nowhere
        assert await channel.send(("ECHO", "in step")) == b"in step"
        await channel.aclose()
    uvloop.run(main())


def test_a_reply_that_came_during_a_long_loop_turn_reaches_its_caller(redis_port):
    """The event loop (uvloop, as in the gateway) runs due timers before it polls: after a turn
    that blocked past the time limit, the caller used to fail although its reply sat in the
    socket; for an admission, a verdict Redis had taken that the gateway never learnt."""
    async def main():
        channel = RedisChannel(f"redis://127.0.0.1:{redis_port}/0", 0.05)
        await channel.send(("PING",))  # connected
        loop = asyncio.get_running_loop()
        ours, other = socket.socketpair()
        # Another connection's callback blocks for 0.2 s while the reply arrives (the time
        # limit passes meanwhile); the loop's next turn starts with its timers.
        loop.add_reader(ours.fileno(), lambda: (ours.recv(1), time.sleep(0.2)))
        reply = channel.send(("ECHO", "in time"))
        other.send(b"x")
        try:
            assert await reply == b"in time"
        finally:
            loop.remove_reader(ours.fileno())
            ours.close()
            other.close()
            await channel.aclose()
    uvloop.run(main())


def test_unreachable_redis_fails_every_caller():
    async def main():
        channel = RedisChannel(f"redis://127.0.0.1:{free_port()}/0", 0.5)
        out = await asyncio.gather(*[channel.send(("PING",)) for _ in range(3)],
                                   return_exceptions=True)
        assert all(isinstance(e, RedisConnectionError) for e in out), out
        await channel.aclose()
    asyncio.run(main())


def test_the_url_password_and_database_are_used():
    proc, port = start_redis("--requirepass", "s3cret")
    try:
        async def main():
            good = RedisChannel(f"redis://:s3cret@127.0.0.1:{port}/3", 1.0)
            assert await good.send(("SET", "where", "db3")) == b"OK"
            await good.aclose()
            check = Redis(port=port, password="s3cret", db=3)
            assert await check.get("where") == b"db3"
            await check.aclose()
            bad = RedisChannel(f"redis://:wrong@127.0.0.1:{port}/0", 1.0)
            with pytest.raises(RedisConnectionError, match="handshake"):
                await bad.send(("PING",))
            await bad.aclose()
        asyncio.run(main())
    finally:
        proc.terminate()
        proc.wait()


def test_wire_format_matches_redis_py():
    from redis.asyncio.connection import Connection

    for args in [("EVALSHA", "abc", 2, "k1", "clé", b'[1,"x"]'), ("PING",), ("SET", "k", "")]:
        assert redis_wire.resp(args) == b"".join(Connection().pack_command(*args))


def test_an_answer_that_is_not_resp_fails_the_callers_and_the_next_call_reconnects():
    async def main():
        connections = []

        async def serve(reader, writer):
            connections.append(writer)
            await reader.read(100)
            writer.write(b"HTTP/1.1 400 Bad Request\r\n\r\n" if len(connections) == 1 else b"+PONG\r\n")
            await writer.drain()

        server = await asyncio.start_server(serve, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        channel = RedisChannel(f"redis://127.0.0.1:{port}/0", 1.0)
        with pytest.raises(RedisConnectionError, match="not RESP"):
            await channel.send(("PING",))
        assert await channel.send(("PING",)) == b"PONG"
        assert len(connections) == 2
        await channel.aclose()
        server.close()
    asyncio.run(main())
