"""The backend client's connector keeps at most HTTP_MAX_KEEPALIVE idle connections: after a
burst, the surplus is closed, not left open on the backend until keep-alive expires."""

from __future__ import annotations

import asyncio

import aiohttp

from llmgw.backend_client import CappedConnector

RESPONSE = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Type: application/json\r\n\r\n{}"


async def _server(open_conns: set):
    """A minimal keep-alive HTTP server that answers each request after a short pause, so
    concurrent requests need connections of their own; it tracks which are open."""
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        open_conns.add(writer)
        try:
            while await reader.readuntil(b"\r\n\r\n"):
                await asyncio.sleep(0.05)
                writer.write(RESPONSE)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            open_conns.discard(writer)
            writer.close()
    return await asyncio.start_server(handle, "127.0.0.1", 0)


async def _burst(max_idle: int) -> int:
    open_conns: set = set()
    server = await _server(open_conns)
    port = server.sockets[0].getsockname()[1]
    connector = CappedConnector(max_idle=max_idle, limit=100, keepalive_timeout=30)
    async with aiohttp.ClientSession(connector=connector) as session:
        async def one():
            async with session.get(f"http://127.0.0.1:{port}/") as resp:
                assert resp.status == 200
                await resp.read()
        await asyncio.gather(*[one() for _ in range(6)])
        await asyncio.sleep(0.2)  # the server notices the closed connections
        still_open = len(open_conns)
    server.close()
    await server.wait_closed()
    return still_open


def test_idle_connections_beyond_the_cap_are_closed():
    assert asyncio.run(_burst(max_idle=2)) == 2


def test_below_the_cap_every_connection_stays_for_reuse():
    assert asyncio.run(_burst(max_idle=100)) == 6
