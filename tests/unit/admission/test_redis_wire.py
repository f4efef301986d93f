"""The request path's Redis connection itself (WireProtocol), against a real redis-server and,
for what a sound Redis never sends, a stand-in server: replies matched to callers in order,
errors to their own caller, late replies to `on_late`, silence and a stream out of step.
(RedisChannel, which queues calls and replaces connections, is tested in test_redis_channel.py.)"""

from __future__ import annotations

import asyncio

import pytest
from redis.exceptions import ConnectionError, NoScriptError, ResponseError, TimeoutError

from llmgw.admission.redis_wire import Call, RedisBusy, WireProtocol, fail, reply_error, resp


async def _connect(port: int, timeout: float = 2.0, patience: float = 4.0):
    lost: list[tuple[list[Call], Exception]] = []
    loop = asyncio.get_running_loop()
    _, proto = await loop.create_connection(
        lambda: WireProtocol(lambda calls, exc: lost.append((calls, exc)), timeout, patience),
        "127.0.0.1", port)
    return proto, lost


def _calls(*commands, on_late=None) -> list[Call]:
    loop = asyncio.get_running_loop()
    return [Call(resp(c), loop.create_future(), on_late) for c in commands]


async def _stand_in(answer):
    """A server that runs `answer(reader, writer)` for each connection; returns it and its port."""
    server = await asyncio.start_server(answer, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


def test_a_batch_gets_its_replies_in_order_and_an_error_only_its_caller(redis_port):
    async def main():
        proto, _ = await _connect(redis_port)
        assert proto.alive
        calls = _calls(("SET", "wire:a", "1"), ("INCR", "wire:a"), ("HSET", "wire:a", "f", "v"),
                       ("EVALSHA", "0" * 40, 0), ("GET", "wire:a"))
        proto.write(calls)
        out = await asyncio.gather(*(c.future for c in calls), return_exceptions=True)
        assert out[0] == b"OK" and out[1] == 2 and out[4] == b"2"
        assert type(out[2]) is ResponseError and "WRONGTYPE" in str(out[2])
        assert isinstance(out[3], NoScriptError)  # so the script is loaded again, not failed
        assert all(c.sent > 0 for c in calls)
        proto.close(ConnectionError("done"))

    asyncio.run(main())


def test_a_reply_whose_caller_gave_up_goes_to_on_late_and_the_next_stays_in_step(redis_port):
    async def main():
        proto, _ = await _connect(redis_port)
        late = []
        gave_up, = _calls(("ECHO", "late"), on_late=late.append)
        gave_up.future.cancel()
        nxt, = _calls(("ECHO", "next"))
        proto.write([gave_up])
        proto.write([nxt])
        assert await nxt.future == b"next"
        assert late == [b"late"]
        proto.close(ConnectionError("done"))

    asyncio.run(main())


def test_a_handshake_call_is_answered_and_marked_never_to_be_resent(redis_port):
    async def main():
        real, _ = await _connect(redis_port)
        assert await real.write_one(resp(("PING",))) == b"PONG"
        real.close(ConnectionError("done"))

        async def hang_up(reader, writer):
            await reader.read(1000)
            writer.close()
        server, port = await _stand_in(hang_up)
        proto, lost = await _connect(port)
        pending = proto.write_one(resp(("PING",)))
        for _ in range(100):
            if lost:
                break
            await asyncio.sleep(0.01)
        (handed, _), = lost
        assert [c.resent for c in handed] == [True] and not pending.done()
        server.close()

    asyncio.run(main())


def test_silence_fails_each_call_after_its_time_limit_then_closes_the_connection():
    async def main():
        async def silent(reader, writer):
            await reader.read(1000)
            await asyncio.sleep(5)
        server, port = await _stand_in(silent)
        proto, lost = await _connect(port, timeout=0.1, patience=0.3)
        first, = _calls(("PING",))
        loop = asyncio.get_running_loop()
        started = loop.time()
        proto.write([first])
        with pytest.raises(TimeoutError):
            await first.future
        assert 0.1 <= loop.time() - started < 0.25 and proto.alive
        second, = _calls(("PING",))
        proto.write([second])
        with pytest.raises(TimeoutError):
            await second.future
        await asyncio.sleep(0.4)  # silent for longer than the patience: the connection goes
        assert not proto.alive  # ours to close: nothing handed back to resend
        assert all(handed == [] for handed, _ in lost)
        server.close()

    asyncio.run(main())


def test_a_call_queued_behind_others_past_its_patience_is_busy_not_timed_out():
    async def main():
        async def slow(reader, writer):
            await reader.read(1000)
            for _ in range(8):  # Redis keeps answering, one reply every 0.05 s
                await asyncio.sleep(0.05)
                writer.write(b"+PONG\r\n")
                await writer.drain()
        server, port = await _stand_in(slow)
        proto, _ = await _connect(port, timeout=0.15, patience=0.2)
        calls = _calls(*[("PING",)] * 8)
        proto.write(calls)
        out = await asyncio.gather(*(c.future for c in calls), return_exceptions=True)
        assert out[:3] == [b"PONG"] * 3
        assert any(isinstance(o, RedisBusy) for o in out[3:])
        assert not any(type(o) is TimeoutError for o in out)  # Redis was never silent that long
        proto.close(ConnectionError("done"))
        server.close()

    asyncio.run(main())


@pytest.mark.parametrize("answer,error", [
    (b"+PONG\r\n+EXTRA\r\n", "nobody asked for"),
    (b"-READONLY You can't write against a read only replica.\r\n", "replica"),
])
def test_a_stream_out_of_step_or_a_demoted_primary_closes_the_connection(answer, error):
    async def main():
        async def odd(reader, writer):
            await reader.read(1000)
            writer.write(answer)
            await writer.drain()
            await asyncio.sleep(1)
        server, port = await _stand_in(odd)
        proto, _ = await _connect(port)
        call, = _calls(("PING",))
        proto.write([call])
        out = await asyncio.gather(call.future, return_exceptions=True)
        await asyncio.sleep(0.05)
        assert not proto.alive
        if error == "replica":
            assert isinstance(out[0], ConnectionError) and error in str(out[0])
        else:
            assert out == [b"PONG"]
        server.close()

    asyncio.run(main())


def test_a_connection_lost_hands_its_unanswered_calls_back():
    async def main():
        async def hang_up(reader, writer):
            await reader.read(1000)
            writer.close()
        server, port = await _stand_in(hang_up)
        proto, lost = await _connect(port)
        calls = _calls(("PING",), ("PING",))
        proto.write(calls)
        for _ in range(100):
            if lost:
                break
            await asyncio.sleep(0.01)
        (handed, error), = lost
        assert handed == calls and isinstance(error, ConnectionError)
        assert not any(c.future.done() for c in calls)  # the channel decides: resend or fail
        assert not proto.alive
        server.close()

    asyncio.run(main())


def test_close_fails_every_waiting_caller_with_the_reason(redis_port):
    async def main():
        async def silent(reader, writer):
            await asyncio.sleep(5)
        server, port = await _stand_in(silent)
        proto, _ = await _connect(port)
        calls = _calls(("PING",), ("PING",))
        proto.write(calls)
        proto.close(ConnectionError("shutting down"))
        for c in calls:
            with pytest.raises(ConnectionError, match="shutting down"):
                await c.future
        assert not proto.alive
        server.close()

    asyncio.run(main())


def test_reply_errors_and_fail():
    assert isinstance(reply_error(ResponseError("NOSCRIPT No matching script")), NoScriptError)
    other = reply_error(ResponseError("ERR wrong number of arguments"))
    assert type(other) is ResponseError and str(other) == "ERR wrong number of arguments"

    async def main():
        future = asyncio.get_running_loop().create_future()
        future.set_result(1)
        fail(future, ConnectionError("x"))  # a future already settled keeps its result
        assert future.result() == 1
        fresh = asyncio.get_running_loop().create_future()
        fail(fresh, ConnectionError("x"))
        assert isinstance(fresh.exception(), ConnectionError)

    asyncio.run(main())
