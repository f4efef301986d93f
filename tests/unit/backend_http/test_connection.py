"""One keep-alive connection and its Response against a real local HTTP/1.1 server (see
conftest.py): bodies read whole or as they arrive, reading paused and resumed around the
high-water mark, the silence, head and answer time limits, a dropped connection and a non-HTTP
answer as their own errors, closing an unfinished response, and the headers kept on demand."""

from __future__ import annotations

import asyncio

import pytest

from llmgw.backend_http import ConnectionDropped, ProtocolError, ReadTimeout


def test_connections_are_reused_and_bodies_read_whole_or_in_pieces(run, client, get):
    async def scenario(server, origin):
        http = client()
        for _ in range(5):
            assert await get(http, origin, b"/json") == b'{"ok": true}'
        assert await get(http, origin, b"/big") == server.BIG
        assert await get(http, origin, b"/chunked") == b"0001020304"
        resp = await http.request(origin, b"POST", b"/chunked", b"", b"", read_timeout=2)
        pieces = [chunk async for chunk in resp.chunks()]
        assert b"".join(pieces) == b"0001020304" and len(pieces) == 5  # as they arrived
        assert server.accepted == 1  # one keep-alive connection served all of them
        await http.aclose()
    run(scenario)


def test_a_connection_paused_by_an_unread_answer_reads_again_once_pooled(run, client, get):
    """A caller that reads late (a stream waiting for its admission) let a whole answer pile
    up past the high-water mark: reading paused, and the answer completed in that same read.
    The connection went back to the pool still paused, and the next request on it waited for
    an answer nobody read, until its time limit."""
    async def scenario(server, origin):
        http = client()
        resp = await http.request(origin, b"POST", b"/over", b"", b"", read_timeout=2)
        await asyncio.sleep(0.3)  # the whole answer arrives meanwhile, unread
        assert await resp.read() == server.OVER
        assert await asyncio.wait_for(get(http, origin, b"/json", timeout=5), 2) == b'{"ok": true}'
        assert server.accepted == 1  # on the same connection
        await http.aclose()
    run(scenario)


def test_silence_is_a_read_timeout_but_a_slow_trickle_is_not(run, client, get):
    async def scenario(server, origin):
        http = client()
        with pytest.raises(ReadTimeout):
            await get(http, origin, b"/silent", timeout=0.2)
        # 0.5 s in all, never 0.3 s without data: no timeout
        assert await get(http, origin, b"/trickle", timeout=0.3) == b"0001020304"
        await http.aclose()
    run(scenario)


def test_a_head_timeout_cuts_a_missing_head_but_not_a_slow_body(run, client):
    async def scenario(server, origin):
        http = client()
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
    run(scenario)


def test_an_answer_timeout_cuts_a_body_that_trickles_within_the_silence_limit(run, client, get):
    async def scenario(server, origin):
        http = client()
        loop = asyncio.get_running_loop()
        started = loop.time()
        resp = await http.request(origin, b"POST", b"/trickle", b"", b"{}", read_timeout=0.3,
                                  answer_timeout=0.25)
        with pytest.raises(ReadTimeout):  # 0.5 s of body, never 0.3 s of silence
            await resp.read()
        assert 0.2 < loop.time() - started < 0.45
        assert await get(http, origin, b"/json") == b'{"ok": true}'  # the client still works
        await http.aclose()
    run(scenario)


def test_a_dropped_connection_and_a_non_http_answer_are_their_own_errors(run, client, get):
    async def scenario(server, origin):
        http = client()
        resp = await http.request(origin, b"POST", b"/drop", b"", b"", read_timeout=2)
        with pytest.raises(ConnectionDropped):
            await resp.read()
        with pytest.raises(ProtocolError):
            await get(http, origin, b"/garbage")
        assert await get(http, origin, b"/json") == b'{"ok": true}'  # the client still works
        await http.aclose()
    run(scenario)


def test_closing_an_unfinished_response_closes_its_connection(run, client):
    async def scenario(server, origin):
        http = client()
        resp = await http.request(origin, b"POST", b"/trickle", b"", b"", read_timeout=2)
        await anext(resp.chunks())
        resp.close()  # what tells vLLM to stop generating
        await asyncio.sleep(0.05)
        assert http.open == 0
        await asyncio.sleep(0.5)  # the server learns of it at its next write
        assert server.open == 0 and server.accepted == 1
        await http.aclose()
    run(scenario)


def test_a_client_asked_to_keep_headers_keeps_them_and_the_gateways_own_keeps_none(run, client):
    async def scenario(server, origin):
        plain, keeping = client(), client(keep_headers=True)
        for http, expected in ((plain, None), (keeping, {"content-length": "2", "connection": "close"})):
            resp = await http.request(origin, b"POST", b"/close", b"", b"{}", read_timeout=2)
            assert await resp.read() == b"ok" and resp.headers == expected
            chunked = await http.request(origin, b"POST", b"/chunked", b"", b"{}", read_timeout=2)
            await chunked.read()
            assert chunked.headers == (None if expected is None else {"transfer-encoding": "chunked"})
            await http.aclose()
    run(scenario)
