"""The upstream deadline holds for the whole answer: a body trickled byte by byte, a wait for a
connection under the cap, and a /tokenize that never answers each end within their bound.

A real Upstream and backend client against a real local HTTP/1.1 server."""

from __future__ import annotations

import asyncio
import random
import time

import pytest

from llmgw import upstream as upstream_module
from llmgw.backend_http import BackendHTTP
from llmgw.errors import NoCapacity, UpstreamTimeout
from llmgw.health import HealthMonitor
from llmgw.observability.metrics import Metrics
from llmgw.resilience.retry import Backoff, RetryBudget, RetryPolicy
from llmgw.resilience.wiring import build_selector
from llmgw.routing import Backend, Model, Pool, RoutingTable
from llmgw.settings import Settings
from llmgw.upstream import Upstream

DEADLINE = 0.5  # UPSTREAM_TIMEOUT_SECONDS here
GUARD = 5.0  # how long a test waits before calling a bound broken (the old code: 50 s or more)


async def _serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """/trickle: the head at once, then a byte every 50 ms of a 1,000-byte body (50 s);
    anything else: never an answer."""
    try:
        head = await reader.readuntil(b"\r\n\r\n")
        await reader.readexactly(int(head.split(b"Content-Length: ")[1].split(b"\r\n")[0]))
        if head.split(b" ")[1] != b"/trickle":
            await asyncio.sleep(3600)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n")
        for _ in range(1000):
            writer.write(b" ")
            await writer.drain()
            await asyncio.sleep(0.05)
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    finally:
        writer.close()


def _upstream(url: str, deadline: float, **http_caps) -> tuple[Upstream, Model]:
    pool = Pool("p", (Backend("b0", url, 8),))
    model = Model("m", "m", (), pool, frozenset(), "o")
    routing = RoutingTable([model], {"p": pool})
    settings = Settings(upstream_timeout_seconds=deadline, upstream_connect_timeout_secs=5,
                        retry_backoff_secs=0)
    caps = {"max_connections": 100, "max_idle": 10, "keepalive_secs": 4.0,
            "connect_timeout": settings.upstream_connect_timeout_secs, **http_caps}
    http = BackendHTTP(**caps)
    metrics = Metrics(tenant_labels=False)
    health = HealthMonitor(http, routing, interval=10, timeout=1, metrics=metrics)
    selector = build_selector(settings, routing, health, metrics)
    retry = RetryPolicy(max_retries=2, budget=RetryBudget(0.2),
                        backoff=Backoff(0, 1.0, random.Random(0)))
    return Upstream(http, selector, retry, settings, metrics), model


def _run(scenario, deadline: float = DEADLINE, **http_caps) -> None:
    async def main():
        server = await asyncio.start_server(_serve, "127.0.0.1", 0)
        url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
        try:
            await asyncio.wait_for(scenario(*_upstream(url, deadline, **http_caps)), GUARD)
        finally:
            server.close()
    asyncio.run(main())


def test_a_trickled_body_is_cut_at_the_deadline_not_at_max_request_secs():
    async def scenario(upstream, model):
        started = time.monotonic()
        # Each byte comes well within the silence limit: only an answer-by limit stops it.
        with pytest.raises(UpstreamTimeout):
            await upstream.forward(model, "/trickle", {}, "r1")
        assert DEADLINE * 0.9 < time.monotonic() - started < DEADLINE * 2
    _run(scenario)


def test_waiting_for_a_connection_under_the_cap_ends_with_the_deadline():
    async def scenario(upstream, model):
        # It holds the only connection for 3 s, its own longer limit.
        held = asyncio.create_task(upstream.forward(model, "/hang", {}, "r1", limit=3.0))
        await asyncio.sleep(0.1)
        started = time.monotonic()
        with pytest.raises(NoCapacity):  # the gateway's own cap: 503, never the backend's fault
            await upstream.forward(model, "/hang", {}, "r2")
        assert DEADLINE * 0.9 < time.monotonic() - started < DEADLINE * 2
        held.cancel()
    _run(scenario, max_connections=1)


def test_tokenize_has_a_short_bound_of_its_own(monkeypatch):
    monkeypatch.setattr(upstream_module, "TOKENIZE_SECS", 0.3)

    async def scenario(upstream, model):
        started = time.monotonic()
        # The upstream deadline is 30 s here: tokenize must not take it.
        assert await upstream.tokenize(model, {"prompt": "hi"}, "r1") is None
        assert 0.25 < time.monotonic() - started < 1.0
    _run(scenario, deadline=30.0)
