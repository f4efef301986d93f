"""One keep-alive HTTP/1.1 connection to a backend: a request written in one piece, its response
parsed by httptools (the parser uvicorn uses), the body handed on as it arrives.

A connection carries one request at a time. When a response is complete and the backend
allows keep-alive, the connection goes back to its pool at once, while the body it buffered
is still being read by the caller: the wire is done with it.
"""

from __future__ import annotations

import asyncio
import collections
import math
from collections.abc import AsyncIterator, Callable

import httptools

from .errors import ConnectionDropped, ProtocolError, ReadTimeout

HIGH_WATER = 256 * 1024  # body bytes buffered and unread before the socket is no longer read


class Response:
    """A backend's answer: the status once the head has arrived, the body as it arrives."""

    __slots__ = ("status", "headers", "complete", "_conn", "_chunks", "_buffered", "_waiter",
                 "_error")

    def __init__(self, conn: Connection) -> None:
        self.status = 0
        # Lower-cased name -> value once the head is in, on a HeadersConnection only: the
        # gateway's backend calls read no header, so they pay nothing for them.
        self.headers: dict[str, str] | None = None
        self.complete = False
        self._conn = conn
        self._chunks: collections.deque[bytes] = collections.deque()
        self._buffered = 0
        self._waiter: asyncio.Future | None = None
        self._error: Exception | None = None

    async def read(self) -> bytes:
        """The whole body."""
        if not self.complete:  # usually it is: a non-streaming answer arrives in one piece
            return b"".join([chunk async for chunk in self.chunks()])
        body = b"".join(self._chunks)
        self._chunks.clear()
        return body

    async def chunks(self) -> AsyncIterator[bytes]:
        """The body as it arrives: each piece is all that arrived since the last one. A
        reader that keeps up gets each piece as the backend sent it; one that fell behind
        gets what piled up in one go, so relaying it costs one pass and one write, not one
        per event."""
        while True:
            if self._chunks:
                chunks = self._chunks
                chunk = chunks.popleft() if len(chunks) == 1 else b"".join(chunks)
                chunks.clear()
                self._buffered = 0
                if not self.complete:  # a complete response's connection may serve another
                    self._conn.drained(0)
                yield chunk
            elif self.complete:
                return
            else:
                await self._wait()

    def close(self) -> None:
        """Done with it: an unfinished response closes its connection (for vLLM, the signal
        to stop generating); a finished one has gone back to the pool already."""
        if not self.complete:
            self._conn.abort()

    async def head(self) -> None:
        while not self.status:
            await self._wait()

    async def _wait(self) -> None:
        if self._error is not None:
            raise self._error
        self._waiter = asyncio.get_running_loop().create_future()
        try:
            await self._waiter
        finally:
            self._waiter = None
        if self._error is not None:
            raise self._error

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    def _feed(self, chunk: bytes) -> int:
        self._chunks.append(chunk)
        self._buffered += len(chunk)
        self._wake()
        return self._buffered

    def _fail(self, error: Exception) -> None:
        if not self.complete and self._error is None:
            self._error = error
            self._wake()


class Connection(asyncio.Protocol):
    """The protocol of one pooled connection; `on_free` and `on_lost` are the pool's."""

    def __init__(self, origin: object, on_free: Callable[[Connection], None],
                 on_lost: Callable[[Connection], None]) -> None:
        self.origin = origin
        self._on_free, self._on_lost = on_free, on_lost
        self._parser = httptools.HttpResponseParser(self)
        self._transport: asyncio.Transport | None = None
        self._response: Response | None = None
        self._loop = asyncio.get_running_loop()
        self._timer: asyncio.TimerHandle | None = None
        self._read_timeout = 0.0
        self._last_data = 0.0
        self._head_by = math.inf  # event-loop time by which the response head must be in
        self._answer_by = math.inf  # and the whole response (a trickled body is no excuse)
        self._paused = False
        self.closed = False
        self.idle_since = 0.0

    def connection_made(self, transport) -> None:
        self._transport = transport

    def send(self, data: bytes, read_timeout: float, head_timeout: float = math.inf,
             answer_timeout: float = math.inf) -> Response:
        """Write a whole request; the response arrives on the returned object. A silence of
        `read_timeout`, no response head within `head_timeout`, or no complete response
        within `answer_timeout` fails it with ReadTimeout."""
        self._response = response = self._new_response()
        self._read_timeout = read_timeout
        self._last_data = self._loop.time()
        self._head_by = self._last_data + head_timeout
        self._answer_by = self._last_data + answer_timeout
        self._timer = self._loop.call_at(self._time_limit(), self._check_silence)
        self._transport.write(data)
        return response

    def abort(self) -> None:
        if not self.closed and self._transport is not None:
            self._transport.abort()  # connection_lost follows, from the event loop

    def drained(self, buffered: int) -> None:
        if self._paused and buffered < HIGH_WATER // 2 and not self.closed:
            self._paused = False
            self._transport.resume_reading()

    def data_received(self, data: bytes) -> None:
        self._last_data = self._loop.time()
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(ProtocolError(f"the backend's answer is not valid HTTP/1.1: {exc}"))

    def _new_response(self) -> Response:
        return Response(self)

    # httptools callbacks, in the order a response arrives (no on_header: httptools calls only
    # the callbacks a protocol has, and this one reads no header)
    def on_headers_complete(self) -> None:
        if self._response is None:
            raise httptools.HttpParserError("a response nobody asked for")
        self._response.status = self._parser.get_status_code()
        self._head_by = math.inf
        self._response._wake()

    def on_body(self, body: bytes) -> None:
        if self._response._feed(body) > HIGH_WATER and not self._paused:
            self._paused = True
            self._transport.pause_reading()  # the reader is slower than the backend

    def on_message_complete(self) -> None:
        response, self._response = self._response, None
        response.complete = True
        response._wake()
        self._stop_timer()
        if self._paused and not self.closed:
            # The read that crossed the high-water mark also ended the answer: what it holds
            # is the response's now, and the wire must be read again for the next request
            # (a paused connection back in the pool left the next answer unread).
            self._paused = False
            self._transport.resume_reading()
        if self._parser.should_keep_alive() and not self.closed:
            self._on_free(self)
        else:
            self.abort()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._stop_timer()
        if self._response is not None:
            self._response._fail(ConnectionDropped(f"the backend closed the connection: {exc}"))
        self._on_lost(self)

    def _time_limit(self) -> float:
        return min(self._last_data + self._read_timeout, self._head_by, self._answer_by)

    def _check_silence(self) -> None:
        limit = self._time_limit()
        if self._loop.time() < limit:  # data came meanwhile: wait for the rest
            self._timer = self._loop.call_at(limit, self._check_silence)
            return
        self._timer = None
        self._fail(ReadTimeout("the backend did not answer in time"))

    def _fail(self, error: Exception) -> None:
        if self._response is not None:
            self._response._fail(error)
        self.abort()

    def _stop_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None


class HeadersConnection(Connection):
    """A Connection whose responses keep their headers (Response.headers): for a client that
    reads them (the batch runner: X-Request-ID, Retry-After)."""

    def _new_response(self) -> Response:
        response = Response(self)
        response.headers = {}
        return response

    def on_header(self, name: bytes, value: bytes) -> None:
        if self._response is not None:
            self._response.headers[name.decode("latin-1").lower()] = value.decode("latin-1")
