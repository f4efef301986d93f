"""A real local HTTP/1.1 server that answers by path, and the client and helpers the
backend_http tests drive it with (fixtures: `run`, `client`, `get`)."""

from __future__ import annotations

import asyncio

import pytest

from llmgw.backend_http import BackendHTTP, Origin
from llmgw.backend_http.connection import HIGH_WATER


class Server:
    """Answers by path; counts connections, open and at most at once."""

    BIG = b"x" * (1024 * 1024)  # well above the client's read buffer high-water mark
    # Just above the high-water mark: its last read both crosses the mark and ends the response.
    OVER = b"y" * (HIGH_WATER + 40_000)

    def __init__(self) -> None:
        self.accepted = self.open = self.peak = 0
        self.server: asyncio.Server | None = None

    async def start(self) -> Origin:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return Origin.from_url(f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}")

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        self.open += 1
        self.peak = max(self.peak, self.open)
        try:
            while head := await reader.readuntil(b"\r\n\r\n"):
                length = int(head.split(b"Content-Length: ")[1].split(b"\r\n")[0])
                await reader.readexactly(length)
                if not await self._answer(head.split(b" ")[1], writer):
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            self.open -= 1
            writer.close()

    async def _answer(self, path: bytes, writer: asyncio.StreamWriter) -> bool:
        """Write the answer for `path`; False closes the connection."""
        if path == b"/silent":
            await asyncio.sleep(10)
        elif path == b"/drop":
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\npartial")
            await writer.drain()
            return False
        elif path == b"/garbage":
            writer.write(b"NOT HTTP AT ALL\r\n\r\n")
        elif path in (b"/trickle", b"/chunked"):
            writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
            for i in range(5):
                await writer.drain()
                await asyncio.sleep(0.1 if path == b"/trickle" else 0.01)
                writer.write(b"2\r\n%02d\r\n" % i)
            writer.write(b"0\r\n\r\n")
        elif path == b"/close":
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
            await writer.drain()
            return False
        else:
            body = {b"/big": self.BIG, b"/over": self.OVER}.get(path, b'{"ok": true}')
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
        await writer.drain()
        return True


def _client(**caps) -> BackendHTTP:
    options = {"max_connections": 100, "max_idle": 10, "keepalive_secs": 4.0,
               "connect_timeout": 1.0}
    return BackendHTTP(**{**options, **caps})


async def _get(http: BackendHTTP, origin: Origin, path: bytes, timeout: float = 2.0) -> bytes:
    resp = await http.request(origin, b"POST", path, b"X-Test: 1\r\n", b"{}", read_timeout=timeout)
    assert resp.status == 200
    return await resp.read()


def _run(scenario) -> None:
    async def main():
        server = Server()
        origin = await server.start()
        try:
            await scenario(server, origin)
        finally:
            server.server.close()
    asyncio.run(main())


@pytest.fixture
def run():
    """run(scenario): `await scenario(server, origin)` with a fresh Server, in a new event loop."""
    return _run


@pytest.fixture
def client():
    """client(**caps): a BackendHTTP with roomy caps unless told otherwise."""
    return _client


@pytest.fixture
def get():
    """await get(http, origin, path, timeout=2.0): the body of a 200 answer."""
    return _get
