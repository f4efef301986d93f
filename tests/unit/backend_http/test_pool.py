"""The connection pool and Origin against a real local HTTP/1.1 server (see conftest.py):
the open and idle caps, keep-alive expiry, connections the backend closed, the bounded wait
for a slot, and a refused connection."""

from __future__ import annotations

import asyncio

import pytest

from llmgw.backend_http import ConnectError, Origin, PoolTimeout
from stacks import free_port


def test_the_open_and_idle_caps_hold(run, client, get):
    async def scenario(server, origin):
        http = client(max_connections=3, max_idle=2)
        answers = await asyncio.gather(*[get(http, origin, b"/chunked") for _ in range(12)])
        assert answers == [b"0001020304"] * 12
        assert server.peak == 3  # never more than max_connections at once
        await asyncio.sleep(0.1)
        assert http.idle == 2 and server.open == 2  # the surplus was closed
        await http.aclose()
    run(scenario)


def test_idle_connections_close_after_the_keepalive(run, client, get):
    async def scenario(server, origin):
        http = client(keepalive_secs=0.2)
        await get(http, origin, b"/json")
        assert server.open == 1
        await asyncio.sleep(0.5)
        assert server.open == 0 and http.idle == 0 and http.open == 0
        await get(http, origin, b"/json")  # a new connection
        assert server.accepted == 2
        await http.aclose()
    run(scenario)


def test_a_connection_idle_past_the_keepalive_is_not_handed_out_before_its_sweep(run, client, get):
    """Sweeps run every keepalive/2 (later on a busy loop): a connection idle longer than the
    keep-alive may be one the backend is closing right now, so it is not used again."""
    async def scenario(server, origin):
        http = client(keepalive_secs=4.0)
        await get(http, origin, b"/json")
        for conns in http._idle.values():
            for conn in conns:
                conn.idle_since -= 4.5  # idle past the keep-alive, its sweep still to come
        await get(http, origin, b"/json")
        assert server.accepted == 2  # a new connection, not the stale one
        await asyncio.sleep(0.05)
        assert server.open == 1 and http.open == 1  # the stale one was closed
        await http.aclose()
    run(scenario)


def test_a_connection_the_backend_closes_is_not_reused(run, client, get):
    async def scenario(server, origin):
        http = client()
        assert await get(http, origin, b"/close") == b"ok"
        assert await get(http, origin, b"/json") == b'{"ok": true}'
        assert server.accepted == 2
        await http.aclose()
    run(scenario)


def test_waiting_for_a_connection_under_the_cap_is_bounded(run, client, get):
    async def scenario(server, origin):
        http = client(max_connections=1)
        held = asyncio.create_task(get(http, origin, b"/silent", timeout=5))
        await asyncio.sleep(0.05)
        loop = asyncio.get_running_loop()
        started = loop.time()
        with pytest.raises(PoolTimeout):
            await http.request(origin, b"POST", b"/json", b"", b"{}", read_timeout=2,
                               connect_within=0.2)
        assert 0.15 < loop.time() - started < 0.5
        held.cancel()
        assert await get(http, origin, b"/json") == b'{"ok": true}'  # the slot came back
        await http.aclose()
    run(scenario)


def test_refused_is_a_connect_error(client, get):
    async def main():
        http = client()
        with pytest.raises(ConnectError):
            await get(http, Origin.from_url(f"http://127.0.0.1:{free_port()}"), b"/json")
        assert http.open == 0
    asyncio.run(main())


def test_origins_parse_ports_paths_and_host_headers():
    assert Origin.from_url("http://vllm-a:8000") == Origin("vllm-a", 8000, False, b"",
                                                           b"vllm-a:8000")
    assert Origin.from_url("https://gpu.example/v") == Origin("gpu.example", 443, True, b"/v",
                                                             b"gpu.example")
    assert Origin.from_url("http://[::1]:81/").host_header == b"[::1]:81"
