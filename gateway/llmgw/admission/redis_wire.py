"""One connection to Redis on the request path: an asyncio protocol that writes batches of
calls, feeds what arrives to hiredis and resolves the oldest waiting caller with each reply
(Redis answers a connection's commands in order, so a FIFO of futures is the whole
bookkeeping), and fails the callers whose reply is overdue. `RedisChannel` (redis_channel.py)
queues the calls and replaces a connection that died.

Errors are redis-py's own classes: a reply error reaches only its caller; a connection that
is out of step, stuck or closed fails every caller waiting on it.
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Callable
from typing import Any

import hiredis
from redis.exceptions import ConnectionError, NoScriptError, ResponseError, TimeoutError

# An overdue caller fails only after one more look at the socket, this long after its time
# limit: the event loop runs its timers before it polls, so after a long loop turn a reply
# that was already there would be thrown away (for an admission: taken in Redis, unknown here).
LAST_LOOK_SECS = 0.001

class RedisBusy(TimeoutError):
    """Redis kept answering, but a call's reply did not come within its patience: a queue
    too long to wait out, not an unreachable Redis."""


class Call:
    __slots__ = ("data", "future", "sent", "resent", "on_late")

    def __init__(self, data: bytes, future: asyncio.Future,
                 on_late: Callable[[Any], None] | None = None) -> None:
        self.data, self.future, self.sent, self.resent = data, future, 0.0, False
        self.on_late = on_late


class WireProtocol(asyncio.Protocol):
    """The connection itself: writes batches, matches replies to callers in order."""

    def __init__(self, on_lost: Callable[[list[Call], Exception], None], timeout: float,
                 patience: float) -> None:
        self._on_lost = on_lost
        self._reader = hiredis.Reader(replyError=ResponseError)
        self._waiting: collections.deque[Call] = collections.deque()
        self._transport: asyncio.Transport | None = None
        self._sweeper: asyncio.TimerHandle | None = None
        self._timeout, self._patience = timeout, patience
        self._heard = 0.0  # loop time of the last bytes Redis sent
        self._looking = False  # overdue calls seen: the socket gets one more read first
        self.alive = False

    def connection_made(self, transport) -> None:
        self._transport, self.alive = transport, True
        self._heard = asyncio.get_running_loop().time()

    def write(self, batch: list[Call]) -> None:
        loop = asyncio.get_running_loop()
        now = loop.time()
        for call in batch:
            call.sent = now
        self._waiting.extend(batch)
        self._transport.write(b"".join([call.data for call in batch]))
        due = now + self._timeout
        if self._sweeper is None or self._sweeper.when() > due:
            # The sweep may be set for a stuck connection's check, far off: these calls must
            # not wait for it to learn that Redis stays silent.
            if self._sweeper is not None:
                self._sweeper.cancel()
            self._sweeper = loop.call_at(due, self._sweep)

    def write_one(self, data: bytes) -> asyncio.Future:
        call = Call(data, asyncio.get_running_loop().create_future())
        call.resent = True  # part of a handshake: never sent again on another connection
        self.write([call])
        return call.future

    def data_received(self, data: bytes) -> None:
        self._heard = asyncio.get_running_loop().time()
        self._reader.feed(data)
        try:
            self._dispatch()
        except hiredis.ProtocolError as exc:  # not RESP: nothing after this can be trusted
            self.close(ConnectionError(f"Redis sent something that is not RESP: {exc}"))

    def _dispatch(self) -> None:
        waiting = self._waiting
        while (reply := self._reader.gets()) is not False:
            if not waiting:  # a reply nobody asked for: the stream is out of step
                self.close(ConnectionError("Redis sent a reply nobody asked for"))
                return
            call = waiting.popleft()
            future = call.future
            if isinstance(reply, ResponseError) and str(reply).startswith("READONLY"):
                # A primary demoted to a replica (a failover): this connection is useless now.
                # Closing it fails the waiting callers; the next command connects again and
                # asks where the primary is.
                fail(future, ConnectionError("Redis is a replica now: " + str(reply)))
                self.close(ConnectionError("Redis was demoted to a replica"))
                return
            if future.done():  # its caller timed out or was cancelled
                if call.on_late is not None and not isinstance(reply, ResponseError):
                    call.on_late(reply)
                continue
            if isinstance(reply, ResponseError):
                future.set_exception(reply_error(reply))
            else:
                future.set_result(reply)

    def _sweep(self) -> None:
        """Fail the callers whose reply is overdue, after one more read of the socket: those
        Redis has been silent to for the time limit (TimeoutError), and those that have
        waited out their patience while it answered others (RedisBusy). Close a connection
        silent for as long as that patience."""
        self._sweeper = None
        if not self._waiting:
            return
        loop = asyncio.get_running_loop()
        now, timeout, patience, heard = loop.time(), self._timeout, self._patience, self._heard
        stuck_at = max(self._waiting[0].sent, heard) + patience  # the oldest call is the first
        overdue, when = [], stuck_at
        for call in self._waiting:  # in the order written: each is due no sooner than the last
            if call.future.done():  # given up already, its reply still to come
                continue
            due = min(max(call.sent, heard) + timeout, call.sent + patience)
            if due > now:
                when = min(when, due)
                break
            overdue.append(call)
        if (overdue or stuck_at <= now) and not self._looking:
            self._looking = True  # nothing fails before the socket has been read once more
            self._sweeper = loop.call_at(now + LAST_LOOK_SECS, self._sweep)
            return
        self._looking = False
        if stuck_at <= now:
            self.close(TimeoutError("Redis stopped answering"))
            return
        for call in overdue:
            silent = now - max(call.sent, heard) >= timeout
            fail(call.future, TimeoutError("Timeout reading from Redis") if silent
                  else RedisBusy("Redis answers, but not this call within its patience"))
        self._sweeper = loop.call_at(when, self._sweep)

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop()
        calls = list(self._waiting)
        self._waiting.clear()
        self._on_lost(calls, ConnectionError(f"Connection to Redis lost: {exc or 'closed by Redis'}"))

    def close(self, error: Exception) -> None:
        """Ours to close (stuck, out of step, shutdown): the waiting callers fail, none is resent."""
        self._stop()
        while self._waiting:
            fail(self._waiting.popleft().future, error)
        if self._transport is not None:
            self._transport.abort()

    def _stop(self) -> None:
        self.alive = False
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None


def resp(args: tuple) -> bytes:
    """One command in Redis' wire format (RESP): hiredis' C encoder, about 3.5 times as fast as
    the Python loop it replaced (and redis-py's general encoder). Our arguments are str, bytes
    and int."""
    return hiredis.pack_command(args)


def reply_error(reply: ResponseError) -> ResponseError:
    message = str(reply)
    if message.startswith("NOSCRIPT"):
        return NoScriptError(message)
    return ResponseError(message)


def fail(future: asyncio.Future, error: Exception) -> None:
    if not future.done():
        future.set_exception(error)
