"""The backend HTTP client against a real local HTTP/1.1 server: keep-alive reuse, the
connection and idle caps, keep-alive expiry, chunked and large bodies, and each failure as
its own error (refused, silent, dropped, not HTTP)."""

from __future__ import annotations

import asyncio

import pytest

from llmgw.backend_http import (BackendHTTP, ConnectError, ConnectionDropped, Origin,
                                PoolTimeout, ProtocolError, ReadTimeout)
from llmgw.backend_http.connection import HIGH_WATER
from stacks import free_port

BIG = b"x" * (1024 * 1024)  # well above the client's read buffer high-water mark
# Just above the high-water mark: its last read both crosses the mark and ends the response.
OVER = b"y" * (HIGH_WATER + 40_000)


class Server:
    """Answers by path; counts connections, open and at most at once."""

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
            body = {b"/big": BIG, b"/over": OVER}.get(path, b'{"ok": true}')
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


def test_connections_are_reused_and_bodies_read_whole_or_in_pieces():
    async def scenario(server, origin):
        http = _client()
        for _ in range(5):
            assert await _get(http, origin, b"/json") == b'{"ok": true}'
        assert await _get(http, origin, b"/big") == BIG
        assert await _get(http, origin, b"/chunked") == b"0001020304"
        resp = await http.request(origin, b"POST", b"/chunked", b"", b"", read_timeout=2)
        pieces = [chunk async for chunk in resp.chunks()]
        assert b"".join(pieces) == b"0001020304" and len(pieces) == 5  # as they arrived
        assert server.accepted == 1  # one keep-alive connection served all of them
        await http.aclose()
    _run(scenario)


def test_a_connection_paused_by_an_unread_answer_reads_again_once_pooled():
    """A caller that reads late (a stream waiting for its admission) let a whole answer pile
    up past the high-water mark: reading paused, and the answer completed in that same read.
    The connection went back to the pool still paused, and the next request on it waited for
    an answer nobody read, until its time limit."""
    async def scenario(server, origin):
        http = _client()
        resp = await http.request(origin, b"POST", b"/over", b"", b"", read_timeout=2)
        await asyncio.sleep(0.3)  # the whole answer arrives meanwhile, unread
        assert await resp.read() == OVER
        assert await asyncio.wait_for(_get(http, origin, b"/json", timeout=5), 2) == b'{"ok": true}'
        assert server.accepted == 1  # on the same connection
        await http.aclose()
    _run(scenario)


def test_the_open_and_idle_caps_hold():
    async def scenario(server, origin):
        http = _client(max_connections=3, max_idle=2)
        answers = await asyncio.gather(*[_get(http, origin, b"/chunked") for _ in range(12)])
        assert answers == [b"0001020304"] * 12
        assert server.peak == 3  # never more than max_connections at once
        await asyncio.sleep(0.1)
        assert http.idle == 2 and server.open == 2  # the surplus was closed
        await http.aclose()
    _run(scenario)


def test_idle_connections_close_after_the_keepalive():
    async def scenario(server, origin):
        http = _client(keepalive_secs=0.2)
        await _get(http, origin, b"/json")
        assert server.open == 1
        await asyncio.sleep(0.5)
        assert server.open == 0 and http.idle == 0 and http.open == 0
        await _get(http, origin, b"/json")  # a new connection
        assert server.accepted == 2
        await http.aclose()
    _run(scenario)


def test_a_connection_idle_past_the_keepalive_is_not_handed_out_before_its_sweep():
    """Sweeps run every keepalive/2 (later on a busy loop): a connection idle longer than the
    keep-alive may be one the backend is closing right now, so it is not used again."""
    async def scenario(server, origin):
        http = _client(keepalive_secs=4.0)
        await _get(http, origin, b"/json")
        for conns in http._idle.values():
            for conn in conns:
                conn.idle_since -= 4.5  # idle past the keep-alive, its sweep still to come
        await _get(http, origin, b"/json")
        assert server.accepted == 2  # a new connection, not the stale one
        await asyncio.sleep(0.05)
        assert server.open == 1 and http.open == 1  # the stale one was closed
        await http.aclose()
    _run(scenario)


def test_a_connection_the_backend_closes_is_not_reused():
    async def scenario(server, origin):
        http = _client()
        assert await _get(http, origin, b"/close") == b"ok"
        assert await _get(http, origin, b"/json") == b'{"ok": true}'
        assert server.accepted == 2
        await http.aclose()
    _run(scenario)


def test_silence_is_a_read_timeout_but_a_slow_trickle_is_not():
    async def scenario(server, origin):
        http = _client()
        with pytest.raises(ReadTimeout):
            await _get(http, origin, b"/silent", timeout=0.2)
        # 0.5 s in all, never 0.3 s without data: no timeout
        assert await _get(http, origin, b"/trickle", timeout=0.3) == b"0001020304"
        await http.aclose()
    _run(scenario)


def test_a_head_timeout_cuts_a_missing_head_but_not_a_slow_body():
    async def scenario(server, origin):
        http = _client()
        loop = asyncio.get_running_loop()
        started = loop.time()
        with pytest.raises(ReadTimeout):  # the silence limit alone would wait 5 s
            await http.request(origin, b"POST", b"/silent", b"", b"{}", read_timeout=5,
                               head_timeout=0.2)
        assert loop.time() - started < 2
        # The head comes at once; the body's 0.5 s are the silence limit's business only.
        resp = await http.request(origin, b"POST", b"/trickle", b"", b"{}", read_timeout=0.3,
                                  head_timeout=0.2)
        assert await resp.read() == b"0001020304"
        await http.aclose()
    _run(scenario)


def test_an_answer_timeout_cuts_a_body_that_trickles_within_the_silence_limit():
    async def scenario(server, origin):
        http = _client()
        loop = asyncio.get_running_loop()
        started = loop.time()
        resp = await http.request(origin, b"POST", b"/trickle", b"", b"{}", read_timeout=0.3,
                                  answer_timeout=0.25)
        with pytest.raises(ReadTimeout):  # 0.5 s of body, never 0.3 s of silence
            await resp.read()
        assert 0.2 < loop.time() - started < 0.45
        assert await _get(http, origin, b"/json") == b'{"ok": true}'  # the client still works
        await http.aclose()
    _run(scenario)


def test_waiting_for_a_connection_under_the_cap_is_bounded():
    async def scenario(server, origin):
        http = _client(max_connections=1)
        held = asyncio.create_task(_get(http, origin, b"/silent", timeout=5))
        await asyncio.sleep(0.05)
        loop = asyncio.get_running_loop()
        started = loop.time()
        with pytest.raises(PoolTimeout):
            await http.request(origin, b"POST", b"/json", b"", b"{}", read_timeout=2,
                               connect_within=0.2)
        assert 0.15 < loop.time() - started < 0.5
        held.cancel()
        assert await _get(http, origin, b"/json") == b'{"ok": true}'  # the slot came back
        await http.aclose()
    _run(scenario)


def test_a_dropped_connection_and_a_non_http_answer_are_their_own_errors():
    async def scenario(server, origin):
        http = _client()
        resp = await http.request(origin, b"POST", b"/drop", b"", b"", read_timeout=2)
        with pytest.raises(ConnectionDropped):
            await resp.read()
        with pytest.raises(ProtocolError):
            await _get(http, origin, b"/garbage")
        assert await _get(http, origin, b"/json") == b'{"ok": true}'  # the client still works
        await http.aclose()
    _run(scenario)


def test_closing_an_unfinished_response_closes_its_connection():
    async def scenario(server, origin):
        http = _client()
        resp = await http.request(origin, b"POST", b"/trickle", b"", b"", read_timeout=2)
        await anext(resp.chunks())
        resp.close()  # what tells vLLM to stop generating
        await asyncio.sleep(0.05)
        assert http.open == 0
        await asyncio.sleep(0.5)  # the server learns of it at its next write
        assert server.open == 0 and server.accepted == 1
        await http.aclose()
    _run(scenario)


def test_refused_is_a_connect_error():
    async def main():
        http = _client()
        with pytest.raises(ConnectError):
            await _get(http, Origin.from_url(f"http://127.0.0.1:{free_port()}"), b"/json")
        assert http.open == 0
    asyncio.run(main())


def test_origins_parse_ports_paths_and_host_headers():
    assert Origin.from_url("http://vllm-a:8000") == Origin("vllm-a", 8000, False, b"",
                                                           b"vllm-a:8000")
    assert Origin.from_url("https://gpu.example/v") == Origin("gpu.example", 443, True, b"/v",
                                                             b"gpu.example")
    assert Origin.from_url("http://[::1]:81/").host_header == b"[::1]:81"


def test_a_client_asked_to_keep_headers_keeps_them_and_the_gateways_own_keeps_none():
    async def scenario(server, origin):
        plain, keeping = _client(), _client(keep_headers=True)
        for http, expected in ((plain, None), (keeping, {"content-length": "2", "connection": "close"})):
            resp = await http.request(origin, b"POST", b"/close", b"", b"{}", read_timeout=2)
            assert await resp.read() == b"ok" and resp.headers == expected
            chunked = await http.request(origin, b"POST", b"/chunked", b"", b"{}", read_timeout=2)
            await chunked.read()
            assert chunked.headers == (None if expected is None else {"transfer-encoding": "chunked"})
            await http.aclose()
    _run(scenario)
