"""Keep-alive connections to the backends, capped in number, and requests sent over them.

Caps: at most `max_connections` open (a request waits for one beyond that), at most
`max_idle` kept idle (HTTP_MAX_CONNECTIONS and HTTP_MAX_KEEPALIVE); an idle connection is
closed after `keepalive_secs`, below the backend's own keep-alive timeout, so the gateway
never sends a request down a connection the backend is closing.
"""

from __future__ import annotations

import asyncio
import collections
import math
import ssl
from dataclasses import dataclass
from urllib.parse import urlsplit

from .connection import Connection, HeadersConnection, Response
from .errors import ConnectError, ConnectTimeout, PoolTimeout


@dataclass(frozen=True)
class Origin:
    """Where a backend listens, parsed once from its URL."""
    host: str
    port: int
    tls: bool
    base_path: bytes     # a path prefix of the URL, if any
    host_header: bytes

    @classmethod
    def from_url(cls, url: str) -> Origin:
        parts = urlsplit(url)
        tls = parts.scheme == "https"
        port = parts.port or (443 if tls else 80)
        host = parts.hostname or ""
        default = port == (443 if tls else 80)
        netloc = (f"[{host}]" if ":" in host else host) + ("" if default else f":{port}")
        return cls(host, port, tls, parts.path.rstrip("/").encode(), netloc.encode("idna"))


class BackendHTTP:
    def __init__(self, *, max_connections: int, max_idle: int, keepalive_secs: float,
                 connect_timeout: float, keep_headers: bool = False) -> None:
        """`keep_headers`: every response's headers in Response.headers (the gateway's own
        backend calls need none and do not pay for them)."""
        self._connection = HeadersConnection if keep_headers else Connection
        self._max_open, self._max_idle = max_connections, max_idle
        self._keepalive, self._connect_timeout = keepalive_secs, connect_timeout
        self._idle: dict[Origin, list[Connection]] = collections.defaultdict(list)
        self._idle_count = 0
        self._open = 0
        self._waiters: collections.deque[asyncio.Future] = collections.deque()
        self._sweeper: asyncio.TimerHandle | None = None
        self._tls: ssl.SSLContext | None = None
        self._closed = False

    async def request(self, origin: Origin, method: bytes, path: bytes, headers: bytes,
                      body: bytes, *, read_timeout: float, head_timeout: float = math.inf,
                      answer_timeout: float = math.inf,
                      connect_within: float = math.inf) -> Response:
        """Send a request; return once the response's head has arrived. `headers` are whole
        header lines (CRLF-terminated); Host and Content-Length are added here.

        Getting a connection (a free slot under the cap, then the connect) takes at most the
        connect timeout and `connect_within`: PoolTimeout while waiting for a slot,
        ConnectTimeout while connecting. Then a silence of `read_timeout`, no head within
        `head_timeout`, or no complete response within `answer_timeout` (all counted from the
        request's sending) raise ReadTimeout."""
        conn = await self._acquire(origin, min(self._connect_timeout, connect_within))
        head = b"%s %s%s HTTP/1.1\r\nHost: %s\r\nContent-Length: %d\r\n%s\r\n" % (
            method, origin.base_path, path, origin.host_header, len(body), headers)
        response = conn.send(head + body, read_timeout, head_timeout, answer_timeout)
        try:
            await response.head()
        except BaseException:
            conn.abort()  # failed or cancelled mid-exchange: the connection is out of step
            raise
        return response

    async def aclose(self) -> None:
        self._closed = True
        for conns in self._idle.values():
            for conn in conns:
                conn.abort()
        self._idle.clear()
        self._idle_count = 0

    @property
    def idle(self) -> int:
        return self._idle_count

    @property
    def open(self) -> int:
        return self._open

    async def _acquire(self, origin: Origin, wait: float) -> Connection:
        """An idle connection to `origin`, else a new one within `wait` seconds."""
        idle = self._idle.get(origin)
        loop = asyncio.get_running_loop()
        while idle:  # newest first: the one least likely to have been closed by the backend
            conn = idle.pop()
            self._idle_count -= 1
            if conn.closed:
                continue
            if loop.time() - conn.idle_since < self._keepalive:
                return conn
            # Idle past the keep-alive, not yet swept (sweeps run every keepalive/2, and a
            # busy loop runs them late): the backend may be closing it right now, and a
            # request sent down it would fail as if the backend had broken it.
            conn.abort()
        connect_by = loop.time() + wait
        if self._open >= self._max_open:
            try:
                async with asyncio.timeout_at(connect_by):
                    await self._slot()
            except TimeoutError:
                raise PoolTimeout(f"no free connection within {wait:g} s") from None
        self._open += 1
        try:
            return await self._connect(origin, connect_by - loop.time())
        except BaseException:
            self._open -= 1
            self._wake_one()
            raise

    async def _slot(self) -> None:
        """Wait until fewer than `max_connections` are open."""
        while self._open >= self._max_open:
            waiter = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            try:
                await waiter
            except asyncio.CancelledError:
                if waiter.done() and not waiter.cancelled():
                    self._wake_one()  # woken, then cancelled: the slot goes to the next in line
                raise

    async def _connect(self, origin: Origin, timeout: float) -> Connection:
        loop = asyncio.get_running_loop()
        context = self._tls_context() if origin.tls else None
        try:
            async with asyncio.timeout(max(0.0, timeout)):
                _, conn = await loop.create_connection(
                    lambda: self._connection(origin, self._free, self._lost), origin.host, origin.port,
                    ssl=context, server_hostname=origin.host if context else None)
        except TimeoutError:
            raise ConnectTimeout(f"no connection within {timeout:g} s") from None
        except (OSError, ssl.SSLError) as exc:
            raise ConnectError(f"cannot connect: {exc}") from None
        return conn

    def _tls_context(self) -> ssl.SSLContext:
        if self._tls is None:
            self._tls = ssl.create_default_context()
        return self._tls

    def _free(self, conn: Connection) -> None:
        """A response is complete and the backend keeps the connection: keep it idle, unless
        enough are idle already or a request waits for a slot (closing this one frees it)."""
        if self._closed or self._idle_count >= self._max_idle or self._waiters:
            conn.abort()
            return
        loop = asyncio.get_running_loop()
        conn.idle_since = loop.time()
        self._idle[conn.origin].append(conn)
        self._idle_count += 1
        if self._sweeper is None:
            self._sweeper = loop.call_later(self._keepalive / 2, self._sweep)

    def _lost(self, conn: Connection) -> None:
        self._open -= 1
        idle = self._idle.get(conn.origin)
        if idle and conn in idle:  # the backend closed an idle connection
            idle.remove(conn)
            self._idle_count -= 1
        self._wake_one()

    def _wake_one(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    def _sweep(self) -> None:
        """Close connections idle for longer than the keep-alive; oldest are first in each list."""
        self._sweeper = None
        loop = asyncio.get_running_loop()
        expired = loop.time() - self._keepalive
        for conns in self._idle.values():
            while conns and conns[0].idle_since <= expired:
                conns.pop(0).abort()
                self._idle_count -= 1
        if self._idle_count:
            self._sweeper = loop.call_later(self._keepalive / 2, self._sweep)
