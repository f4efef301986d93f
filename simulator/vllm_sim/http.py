"""HTTP/1.1 server protocol: parsing (httptools), keep-alive, response writing, streaming."""

from __future__ import annotations

import asyncio
import time
from collections import deque
from email.utils import formatdate
from http import HTTPStatus
from typing import Any, Callable

import httptools
import orjson

_REASONS = {s.value: s.phrase.encode() for s in HTTPStatus}
_MAX_BODY = 64 * 1024 * 1024

_date_cache = [0, b""]
_background: set = set()


def _http_date() -> bytes:
    # formatdate is slow-ish; the header only changes once per second.
    now = int(time.time())
    if _date_cache[0] != now:
        _date_cache[0] = now
        _date_cache[1] = formatdate(now, usegmt=True).encode()
    return _date_cache[1]


class Request:
    """One parsed HTTP request; the body is complete when handlers see it."""

    __slots__ = ("method", "path", "query", "headers", "body", "keep_alive")

    def __init__(self, method: str, url: bytes, headers: dict, body: bytes, keep_alive: bool):
        self.method = method
        parsed = httptools.parse_url(url)
        self.path = parsed.path.decode("latin-1")
        self.query = (parsed.query or b"").decode("latin-1")
        self.headers = headers
        self.body = body
        self.keep_alive = keep_alive


class HttpConnection(asyncio.Protocol):
    """One client connection; requests are served strictly one after another."""

    default_headers = b"vary: Origin\r\n"  # vLLM's CORS middleware adds it to (almost) every answer
    open_connections: set = set()

    def __init__(self, handler: Callable[[Request, "HttpConnection"], Any]):
        self._handler = handler
        self._parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self._url = b""
        self._headers: dict[str, str] = {}
        self._body: list[bytes] = []
        self._body_len = 0
        self._queue: deque[Request] = deque()
        self._busy = False
        self._task: asyncio.Task | None = None
        self._keep_alive = True
        self._responded = False
        self._write_paused = False
        self._drain_waiter: asyncio.Future | None = None
        self._stream_head = b""
        self._in_message = False
        self.last_active = time.monotonic()

    # ---- asyncio.Protocol -------------------------------------------------
    def connection_made(self, transport):
        self.transport = transport
        self.open_connections.add(self)

    def connection_lost(self, exc):
        self.closed = True
        self.open_connections.discard(self)
        if self._task is not None and not self._task.done():
            # Client went away mid-request: cancelling frees capacity slots in finally blocks.
            self._task.cancel()
        self._wake_drain()

    def data_received(self, data: bytes):
        self.last_active = time.monotonic()
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._fatal(400, b"upgrade not supported")
        except httptools.HttpParserError as exc:
            self._fatal(400, str(exc).encode())

    def pause_writing(self):
        self._write_paused = True

    def resume_writing(self):
        self._write_paused = False
        self._wake_drain()

    # ---- httptools callbacks ----------------------------------------------
    def on_message_begin(self):
        self._in_message = True
        self._url = b""
        self._headers = {}
        self._body = []
        self._body_len = 0

    def on_url(self, url: bytes):
        self._url += url

    def on_header(self, name: bytes, value: bytes):
        self._headers[name.decode("latin-1").lower()] = value.decode("latin-1")

    def on_headers_complete(self):
        # curl sends "Expect: 100-continue" for large bodies and would otherwise stall for a second.
        if self._headers.get("expect", "").lower() == "100-continue" and not self.closed:
            self.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")

    def on_body(self, body: bytes):
        self._body_len += len(body)
        if self._body_len > _MAX_BODY:
            raise httptools.HttpParserError("request body too large")
        self._body.append(body)

    def on_message_complete(self):
        self._in_message = False
        req = Request(
            self._parser.get_method().decode(),
            self._url,
            self._headers,
            b"".join(self._body),
            self._parser.should_keep_alive(),
        )
        if self._busy:
            self._queue.append(req)
        else:
            self._dispatch(req)

    # ---- dispatch ---------------------------------------------------------
    def _dispatch(self, req: Request | None):
        """Serve requests in order until one needs the event loop or the connection ends."""
        while req is not None:
            if not self._start(req) or not self._complete():
                return
            req = self._queue.popleft() if self._queue else None

    def _start(self, req: Request) -> bool:
        """Run the handler; True if it answered synchronously, False if a task now owns the request."""
        self._busy = True
        self._keep_alive = req.keep_alive
        self._responded = False
        try:
            result = self._handler(req, self)
        except Exception as exc:  # never let a handler bug kill the connection silently
            self._internal_error(exc)
            return True
        if result is None:
            return True
        self._task = asyncio.get_running_loop().create_task(result)
        self._task.add_done_callback(self._task_done)
        return False

    def _task_done(self, task: asyncio.Task):
        self._task = None
        if not task.cancelled() and task.exception() is not None:
            self._internal_error(task.exception())
        if self._complete() and self._queue:
            self._dispatch(self._queue.popleft())

    def _complete(self) -> bool:
        """Finish the current exchange; True if the connection can take the next request."""
        self._busy = False
        self.last_active = time.monotonic()
        if self.closed:
            return False
        if not self._responded:
            self.abort()
            return False
        if not self._keep_alive:
            self.closed = True
            self.transport.close()
            return False
        return True

    def _internal_error(self, exc: BaseException):
        if not self._responded and not self.closed:
            msg = f"internal simulator error: {type(exc).__name__}: {exc}"
            err = {"message": msg, "type": "InternalServerError", "param": None, "code": 500}
            self.respond(500, orjson.dumps({"error": err}))
        elif not self.closed:
            self.abort()

    def _fatal(self, status: int, msg: bytes):
        if not self.closed:
            if self._busy:  # mid-answer: a 400 would corrupt the response in flight
                self.abort()
                return
            self._keep_alive = False
            err = {"message": "malformed HTTP request: " + msg.decode("latin-1"),
                   "type": "BadRequestError", "param": None, "code": status}
            body = orjson.dumps({"error": err})
            self.respond(status, body, force_close=True)
            self.transport.close()
            self.closed = True

    # ---- response API -----------------------------------------------------
    def _head(self, status: int, first: bytes, content_type: bytes, extra: bytes | None) -> bytes:
        # Header order follows uvicorn + vLLM's CORS middleware: date, server, length/type, vary.
        return b"".join((
            b"HTTP/1.1 %d %s\r\ndate: %s\r\nserver: uvicorn\r\n" % (status, _REASONS.get(status, b"Unknown"),
                                                                     _http_date()),
            first,
            b"content-type: " + content_type + b"\r\n" if content_type else b"",
            self.default_headers if extra is None else extra,
            b"" if self._keep_alive else b"connection: close\r\n",
        ))

    def respond(self, status: int, body: bytes, content_type: bytes = b"application/json",
                extra_headers: bytes | None = None, force_close: bool = False):
        """Write a complete response with Content-Length (extra_headers None means the defaults)."""
        if self.closed or self._responded:
            return
        if force_close:
            self._keep_alive = False
        self._responded = True
        head = self._head(status, b"content-length: %d\r\n" % len(body), content_type, extra_headers)
        self.transport.write(head + b"\r\n" + body)

    async def respond_trickled(self, body: bytes, gap: float, piece: int = 16):
        """`respond` 200, its body sent `piece` bytes at a time, `gap` seconds apart (a fault:
        a backend that answers its head at once, then its body slowly)."""
        if self.closed or self._responded:
            return
        self._responded = True
        head = self._head(200, b"content-length: %d\r\n" % len(body), b"application/json", None)
        self.transport.write(head + b"\r\n")
        for start in range(0, len(body), piece):
            await asyncio.sleep(gap)
            if self.closed:
                raise asyncio.CancelledError  # the client left: stop, as a stream does
            self.transport.write(body[start:start + piece])

    def start_stream(self, status: int = 200, content_type: bytes = b"text/event-stream; charset=utf-8"):
        """Send headers for a chunked response; follow with send_chunk/end_stream."""
        self._responded = True
        head = self._head(status, b"", content_type, None)
        self._stream_head = head + b"transfer-encoding: chunked\r\n\r\n"

    def flush_head(self):
        """Send pending stream headers now (the client sees 200 before the first event)."""
        if self._stream_head and not self.closed:
            self.transport.write(self._stream_head)
            self._stream_head = b""

    def send_chunk(self, data: bytes):
        if self.closed:
            return
        frame = b"%x\r\n%s\r\n" % (len(data), data)
        if self._stream_head:
            # Headers go out with the first event: one syscall instead of two.
            frame = self._stream_head + frame
            self._stream_head = b""
        self.transport.write(frame)

    def send_raw_chunks(self, events: list[bytes], end: bool = False):
        """Several events in one write: still one HTTP chunk per SSE event, but one syscall."""
        if self.closed:
            return
        frames = [self._stream_head]
        self._stream_head = b""
        for data in events:
            frames.append(b"%x\r\n%s\r\n" % (len(data), data))
        if end:
            frames.append(b"0\r\n\r\n")
        self.transport.write(b"".join(frames))

    def end_stream(self):
        if self.closed:
            return
        self.transport.write(self._stream_head + b"0\r\n\r\n")
        self._stream_head = b""

    def abort(self):
        """Drop the connection without completing the response (fault injection)."""
        self._responded = True
        if not self.closed:
            self.closed = True
            self.transport.close()

    async def drain(self):
        """Wait while the kernel send buffer is full, so slow readers apply backpressure."""
        if self._write_paused and not self.closed:
            self._drain_waiter = asyncio.get_running_loop().create_future()
            await self._drain_waiter

    def _wake_drain(self):
        waiter, self._drain_waiter = self._drain_waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    @property
    def writing_paused(self) -> bool:
        return self._write_paused


def _close_idle(timeout: float) -> None:
    """uvicorn's keep-alive timeout: drop connections idle between requests for `timeout` s."""
    now = time.monotonic()
    for conn in list(HttpConnection.open_connections):
        if not conn._busy and not conn._in_message and not conn._queue and now - conn.last_active > timeout:
            conn.closed = True
            conn.transport.close()


def close_all_connections() -> None:
    for conn in list(HttpConnection.open_connections):
        conn.abort()


async def _reap_idle(timeout: float) -> None:
    while True:
        await asyncio.sleep(min(0.5, timeout / 4))
        _close_idle(timeout)


async def serve(handler, host: str, port: int, keep_alive_timeout: float = 5.0, backlog: int = 2048):
    """Start listening (and the idle-connection reaper); returns the asyncio Server."""
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: HttpConnection(handler), host, port, backlog=backlog,
                                      reuse_address=True)
    if keep_alive_timeout > 0:
        _background.add(loop.create_task(_reap_idle(keep_alive_timeout)))  # keep a strong reference
    return server
