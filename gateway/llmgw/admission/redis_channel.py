"""One pipelined Redis connection for the request path: commands out in order, replies back to
their callers; a loop turn's first command at once, the rest of that turn in one write.

redis-py spends more CPU per call than the call costs Redis: a pool checkout under a lock, a
task for `wait_for` on every send, a stream reader, retry and tracing wrappers. The limiter
makes two calls per request, so they go through this instead: an asyncio protocol that feeds
what arrives to hiredis and resolves the oldest waiting caller with each reply. Redis answers
a connection's commands in order, so a FIFO of futures is the whole bookkeeping.

Errors are redis-py's own classes, so callers handle one family: a reply error reaches only
its caller (`ResponseError`, `NoScriptError`); a lost connection fails everything that was
waiting (`ConnectionError`), and the next command connects again.

Two kinds of lateness, told apart because they call for opposite answers. The time limit
counts Redis's silence, not a call's wait: a call fails with `TimeoutError` (Redis is not
answering: the limiter's fail-open policy may apply) only once Redis has sent nothing for the
time limit since the call was written. A burst the gateway itself created makes a long queue
of calls that Redis works through, answering all the while: each call then waits its turn,
up to its patience (PATIENCE_TIMEOUTS time limits, at least PATIENCE_FLOOR_SECS), and past
that fails with `RedisBusy` (Redis answers, but not this call in time: nothing may be admitted
without it). A failed call leaves the
connection in step.
"""

from __future__ import annotations

import asyncio
import collections
import ssl
from collections.abc import Awaitable, Callable
from typing import Any

import hiredis
from redis.asyncio.connection import SSLConnection, parse_url
from redis.exceptions import ConnectionError, NoScriptError, ResponseError, TimeoutError

# How long a call waits for its turn while Redis answers the calls before it (its patience):
# this many time limits, and at least the floor. A connection silent for as long is stuck,
# not slow: it is closed, so every waiter learns at once and the next command gets a new one.
PATIENCE_TIMEOUTS = 4
PATIENCE_FLOOR_SECS = 1.0
# An overdue caller fails only after one more look at the socket, this long after its time
# limit: the event loop runs its timers before it polls, so after a long loop turn a reply
# that was already there would be thrown away (for an admission: taken in Redis, unknown here).
LAST_LOOK_SECS = 0.001
MAX_BATCH = 256  # bounds one write: a burst is sent in pieces, not as one huge buffer


class RedisBusy(TimeoutError):
    """Redis kept answering, but a call's reply did not come within its patience: a queue
    too long to wait out, not an unreachable Redis."""


class RedisChannel:
    def __init__(self, url: str, timeout: float, *, connect_timeout: float = 0.5,
                 locate: Callable[[], Awaitable[Any]] | None = None) -> None:
        """`locate`: where to connect, asked at each connect (Sentinel's primary); without it,
        the URL's address."""
        options = parse_url(url)
        self._address = options.get("path") or (options.get("host", "127.0.0.1"),
                                                options.get("port", 6379))
        self._locate = locate
        self._tls = options.get("connection_class") is SSLConnection
        self._hello = _handshake(options.get("username"), options.get("password"),
                                 int(options.get("db") or 0))
        self._timeout = timeout
        self._patience = max(PATIENCE_FLOOR_SECS, timeout * PATIENCE_TIMEOUTS)
        self._connect_timeout = max(connect_timeout, timeout)
        self._queued: list[_Call] = []
        self._holding = False  # a call went out this loop turn: gather the others
        self._proto: _Protocol | None = None
        self._connecting: asyncio.Task | None = None

    @property
    def timeout(self) -> float:
        """How long Redis may stay silent while a call waits before the call fails."""
        return self._timeout

    @property
    def patience(self) -> float:
        """How long a call waits for its reply at most, however busily Redis answers."""
        return self._patience

    def send(self, command: tuple, on_late: Callable[[Any], None] | None = None, *,
             at_once: bool = False) -> asyncio.Future:
        """Queue one command; its future gets the reply (or the error). A reply that comes
        after its caller gave up (timed out, cancelled) goes to `on_late`, if given.
        `at_once`: written now with whatever is queued, not at the end of the loop turn."""
        future = asyncio.get_running_loop().create_future()
        self._queue(_Call(_resp(command), future, on_late))
        if at_once:
            self._flush()
        return future

    async def aclose(self) -> None:
        if self._connecting is not None:
            self._connecting.cancel()
        if self._proto is not None:
            self._proto.close(ConnectionError("closed by the gateway"))

    def _queue(self, call: _Call) -> None:
        self._queued.append(call)
        if not self._holding:
            # The first call of a loop turn leaves at once: alone, it waits for nothing (at low
            # load, the common case). The rest of the turn's calls then share one write.
            self._holding = True
            asyncio.get_running_loop().call_soon(self._release)  # first: a failed write cannot stall the rest
            self._flush()
        elif len(self._queued) >= MAX_BATCH:
            self._flush()

    def _release(self) -> None:
        self._holding = False
        self._flush()

    def _flush(self) -> None:
        if not self._queued:
            return
        if self._proto is not None and self._proto.alive:
            batch, self._queued = self._queued, []
            self._proto.write(batch)
        elif self._connecting is None:  # the queue waits for the connection, then goes out
            self._connecting = asyncio.get_running_loop().create_task(self._connect())

    def _unanswered(self, calls: list[_Call], error: Exception) -> None:
        """The connection died with these calls written: each is sent once more on a new one
        (Redis restarted, or closed the idle connection just before they reached it); a call
        that already had its second chance fails. Redis may have run a call just before the
        connection died, so a command sent this way must be safe to run twice (the limiter's
        scripts are). A call whose caller gave up goes again only if it has an `on_late`:
        what Redis did with it still matters (an admission taken must be undone)."""
        for call in calls:
            if call.future.done() and call.on_late is None:  # nobody to answer
                continue
            if call.resent:
                _fail(call.future, error)
            else:
                call.resent = True
                self._queue(call)

    async def _connect(self) -> None:
        try:
            async with asyncio.timeout(self._connect_timeout):
                proto = await self._open()
                await asyncio.gather(*(proto.write_one(_resp(c)) for c in self._hello))
        except BaseException as exc:  # noqa: BLE001 - every waiting caller must learn of it
            batch, self._queued = self._queued, []
            error = _connect_error(exc, self._address)
            for call in batch:
                _fail(call.future, error)
            if not isinstance(exc, Exception):
                raise
        else:
            self._proto = proto
            self._flush()
        finally:
            self._connecting = None

    async def _open(self) -> _Protocol:
        loop = asyncio.get_running_loop()
        context = ssl.create_default_context() if self._tls else None
        if self._locate is not None:
            self._address = await self._locate()
        if isinstance(self._address, str):
            _, proto = await loop.create_unix_connection(self._protocol, self._address,
                                                         ssl=context)
        else:
            host, port = self._address
            _, proto = await loop.create_connection(self._protocol, host, port, ssl=context)
        return proto

    def _protocol(self) -> _Protocol:
        return _Protocol(self._unanswered, self._timeout, self._patience)


class _Call:
    __slots__ = ("data", "future", "sent", "resent", "on_late")

    def __init__(self, data: bytes, future: asyncio.Future,
                 on_late: Callable[[Any], None] | None = None) -> None:
        self.data, self.future, self.sent, self.resent = data, future, 0.0, False
        self.on_late = on_late


class _Protocol(asyncio.Protocol):
    """The connection itself: writes batches, matches replies to callers in order."""

    def __init__(self, on_lost: Callable[[list[_Call], Exception], None], timeout: float,
                 patience: float) -> None:
        self._on_lost = on_lost
        self._reader = hiredis.Reader(replyError=ResponseError)
        self._waiting: collections.deque[_Call] = collections.deque()
        self._transport: asyncio.Transport | None = None
        self._sweeper: asyncio.TimerHandle | None = None
        self._timeout, self._patience = timeout, patience
        self._heard = 0.0  # loop time of the last bytes Redis sent
        self._looking = False  # overdue calls seen: the socket gets one more read first
        self.alive = False

    def connection_made(self, transport) -> None:
        self._transport, self.alive = transport, True
        self._heard = asyncio.get_running_loop().time()

    def write(self, batch: list[_Call]) -> None:
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
        call = _Call(data, asyncio.get_running_loop().create_future())
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
                _fail(future, ConnectionError("Redis is a replica now: " + str(reply)))
                self.close(ConnectionError("Redis was demoted to a replica"))
                return
            if future.done():  # its caller timed out or was cancelled
                if call.on_late is not None and not isinstance(reply, ResponseError):
                    call.on_late(reply)
                continue
            if isinstance(reply, ResponseError):
                future.set_exception(_error(reply))
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
            _fail(call.future, TimeoutError("Timeout reading from Redis") if silent
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
            _fail(self._waiting.popleft().future, error)
        if self._transport is not None:
            self._transport.abort()

    def _stop(self) -> None:
        self.alive = False
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None


def _handshake(username: str | None, password: str | None, db: int) -> list[tuple]:
    """AUTH and SELECT, when the URL asks for them."""
    commands: list[tuple] = []
    if password is not None:
        commands.append(("AUTH", username, password) if username else ("AUTH", password))
    if db:
        commands.append(("SELECT", db))
    return commands


def _resp(args: tuple) -> bytes:
    """One command in Redis' wire format (RESP): hiredis' C encoder, about 3.5 times as fast as
    the Python loop it replaced (and redis-py's general encoder). Our arguments are str, bytes
    and int."""
    return hiredis.pack_command(args)


def _error(reply: ResponseError) -> ResponseError:
    message = str(reply)
    if message.startswith("NOSCRIPT"):
        return NoScriptError(message)
    return ResponseError(message)


def _connect_error(exc: BaseException, address: Any) -> Exception:
    if isinstance(exc, (TimeoutError, asyncio.TimeoutError)):
        return TimeoutError(f"Timeout connecting to Redis at {address}")
    if isinstance(exc, ResponseError):  # AUTH or SELECT refused
        return ConnectionError(f"Redis refused the handshake: {exc}")
    return ConnectionError(f"Cannot connect to Redis at {address}: {exc}")


def _fail(future: asyncio.Future, error: Exception) -> None:
    if not future.done():
        future.set_exception(error)
