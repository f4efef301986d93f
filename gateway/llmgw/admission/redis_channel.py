"""The request path's pipelined Redis channel: commands out in order, replies back to their
callers; a loop turn's first command at once, the rest of that turn in one write. It queues
the calls, connects (and connects again after a connection died), and hands each batch to the
connection itself (redis_wire.py).

redis-py spends more CPU per call than the call costs Redis: a pool checkout under a lock, a
task for `wait_for` on every send, a stream reader, retry and tracing wrappers. The limiter
makes two calls per request, so they go through this instead.

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
import ssl
from collections.abc import Awaitable, Callable
from typing import Any

from redis.asyncio.connection import SSLConnection, parse_url
from redis.exceptions import ConnectionError, ResponseError, TimeoutError

from .redis_wire import Call, RedisBusy, WireProtocol, fail, resp

__all__ = ["RedisBusy", "RedisChannel"]

# How long a call waits for its turn while Redis answers the calls before it (its patience):
# this many time limits, and at least the floor. A connection silent for as long is stuck,
# not slow: it is closed, so every waiter learns at once and the next command gets a new one.
PATIENCE_TIMEOUTS = 4
PATIENCE_FLOOR_SECS = 1.0
MAX_BATCH = 256  # bounds one write: a burst is sent in pieces, not as one huge buffer


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
        self._queued: list[Call] = []
        self._holding = False  # a call went out this loop turn: gather the others
        self._proto: WireProtocol | None = None
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
        self._queue(Call(resp(command), future, on_late))
        if at_once:
            self._flush()
        return future

    async def aclose(self) -> None:
        if self._connecting is not None:
            self._connecting.cancel()
        if self._proto is not None:
            self._proto.close(ConnectionError("closed by the gateway"))

    def _queue(self, call: Call) -> None:
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

    def _unanswered(self, calls: list[Call], error: Exception) -> None:
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
                fail(call.future, error)
            else:
                call.resent = True
                self._queue(call)

    async def _connect(self) -> None:
        try:
            async with asyncio.timeout(self._connect_timeout):
                proto = await self._open()
                await asyncio.gather(*(proto.write_one(resp(c)) for c in self._hello))
        except BaseException as exc:  # noqa: BLE001 - every waiting caller must learn of it
            batch, self._queued = self._queued, []
            error = _connect_error(exc, self._address)
            for call in batch:
                fail(call.future, error)
            if not isinstance(exc, Exception):
                raise
        else:
            self._proto = proto
            self._flush()
        finally:
            self._connecting = None

    async def _open(self) -> WireProtocol:
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

    def _protocol(self) -> WireProtocol:
        return WireProtocol(self._unanswered, self._timeout, self._patience)


def _handshake(username: str | None, password: str | None, db: int) -> list[tuple]:
    """AUTH and SELECT, when the URL asks for them."""
    commands: list[tuple] = []
    if password is not None:
        commands.append(("AUTH", username, password) if username else ("AUTH", password))
    if db:
        commands.append(("SELECT", db))
    return commands


def _connect_error(exc: BaseException, address: Any) -> Exception:
    if isinstance(exc, (TimeoutError, asyncio.TimeoutError)):
        return TimeoutError(f"Timeout connecting to Redis at {address}")
    if isinstance(exc, ResponseError):  # AUTH or SELECT refused
        return ConnectionError(f"Redis refused the handshake: {exc}")
    return ConnectionError(f"Cannot connect to Redis at {address}: {exc}")
