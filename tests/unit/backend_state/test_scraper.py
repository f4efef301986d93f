"""The scraper against a real local HTTP server: good bodies reach the view, and a hang,
garbage, a non-200, a huge body or a refused connection only age the figures and say why."""

from __future__ import annotations

import asyncio
import math
import random
import time

from prometheus_client import CollectorRegistry

from llmgw.backend_http import BackendHTTP
from llmgw.backend_state import StateView
from llmgw.backend_state.scraper import MAX_BODY_BYTES, MetricsScraper
from llmgw.observability.metrics import Metrics
from llmgw.routing import Backend, Pool, RoutingTable
from stacks import free_port

GOOD = b'vllm:num_requests_running{model_name="m"} 2\nvllm:num_requests_waiting{model_name="m"} 5\n'


class MetricsServer:
    """Answers GET /metrics as `mode` says: good, garbage, error, huge or hang."""

    def __init__(self) -> None:
        self.mode = "good"
        self.server: asyncio.Server | None = None

    async def start(self) -> str:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while await reader.readuntil(b"\r\n\r\n"):
                if self.mode == "hang":
                    await asyncio.sleep(30)
                status, body = {"good": (200, GOOD), "garbage": (200, b"<html>\x00{}NaN</html>"),
                                "error": (500, b"oops"),
                                "huge": (200, b"#" * (MAX_BODY_BYTES + 1) + b"\n" + GOOD)}[self.mode]
                writer.write(b"HTTP/1.1 %d X\r\nContent-Length: %d\r\n\r\n%s" % (status, len(body), body))
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


def _setup(url: str, dead_url: str):
    backends = (Backend("live", url, 8), Backend("dead", dead_url, 8))
    routing = RoutingTable([], {"p": Pool("p", backends)})
    view = StateView(["live", "dead"], stale_after=3.0)
    http = BackendHTTP(max_connections=10, max_idle=10, keepalive_secs=4, connect_timeout=1)
    metrics = Metrics(tenant_labels=False, registry=CollectorRegistry())
    scraper = MetricsScraper(http, routing, view, interval=0.3, metrics=metrics, rng=random.Random(1))
    return backends, view, http, metrics, scraper


def _sample(metrics: Metrics, name: str, backend: str) -> float:
    return metrics.registry.get_sample_value(name, {"backend": backend, "pool": "p"})


def test_every_failure_leaves_the_good_figures_aging():
    async def main() -> None:
        server = MetricsServer()
        (live, dead), view, http, metrics, scraper = _setup(await server.start(),
                                                            f"http://127.0.0.1:{free_port()}")
        await scraper.scrape(live)
        assert (view.state("live").running, view.state("live").waiting) == (2, 5)
        assert _sample(metrics, "llmgw_backend_requests_waiting", "live") == 5
        good_at = view.state("live").scraped_at
        for mode, error in (("garbage", "NotVLLMMetrics"), ("error", "status 500"),
                            ("huge", "body over"), ("hang", "no answer within 0.3 s")):
            server.mode = mode
            started = time.monotonic()
            await scraper.scrape(live)  # never raises
            assert time.monotonic() - started < 1.0, mode  # a hang costs the timeout, no more
            state = view.state("live")
            assert error in state.error and state.scraped_at == good_at, mode
            assert (state.running, state.waiting) == (2, 5), mode
        assert view.state("live").failures == 4
        assert _sample(metrics, "llmgw_backend_state_scrape_failures_total", "live") == 4
        assert _sample(metrics, "llmgw_backend_state_age_seconds", "live") > 0.3
        await scraper.scrape(dead)
        assert "ConnectError" in view.state("dead").error and view.state("dead").running is None
        assert math.isnan(_sample(metrics, "llmgw_backend_requests_running", "dead"))
        server.mode = "good"
        await scraper.scrape(live)
        assert view.state("live").error is None and view.state("live").scraped_at > good_at
        await http.aclose()
        server.server.close()

    asyncio.run(main())


def test_run_scrapes_each_backend_on_its_own_and_a_hang_holds_up_no_other():
    async def main() -> None:
        server, hung = MetricsServer(), MetricsServer()
        hung.mode = "hang"
        (live, dead), view, http, metrics, scraper = _setup(await server.start(), await hung.start())
        task = asyncio.create_task(scraper.run())
        await asyncio.sleep(1.5)  # about 5 intervals of 0.3 s
        scraped = view.state("live").scraped_at
        assert scraped is not None and time.monotonic() - scraped < 0.6
        assert view.fresh("dead") is None and "no answer" in view.state("dead").error
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await http.aclose()

    asyncio.run(main())


def test_an_interval_of_zero_scrapes_nothing():
    async def main() -> None:
        _, view, http, _, _ = _setup("http://127.0.0.1:1", "http://127.0.0.1:1")
        off = MetricsScraper(http, RoutingTable([], {}), view, interval=0,
                             metrics=Metrics(tenant_labels=False, registry=CollectorRegistry()))
        await asyncio.wait_for(off.run(), 1)  # returns at once

    asyncio.run(main())


class _LowRng:
    """The low end of every range: no start-up spread, each interval 20% short."""

    def uniform(self, low: float, _high: float) -> float:
        return low


class _Watcher:
    """Watches `live` once `on` is set: the scraper then reads it every `watch_secs`."""
    watch_secs = 0.02

    def __init__(self) -> None:
        self.on = False
        self.preempted: list[str] = []

    def watching(self, backend: str) -> bool:
        return self.on and backend == "live"

    def preempt(self, backend: Backend) -> int:
        self.preempted.append(backend.name)
        return 0


def test_a_watched_backend_is_read_every_watch_secs_and_its_watcher_acts_on_each_read():
    async def main() -> None:
        server = MetricsServer()
        backends = (Backend("live", await server.start(), 8),)
        view = StateView(["live"], stale_after=30.0)
        http = BackendHTTP(max_connections=10, max_idle=10, keepalive_secs=4, connect_timeout=1)
        metrics = Metrics(tenant_labels=False, registry=CollectorRegistry())
        scraper = MetricsScraper(http, RoutingTable([], {"p": Pool("p", backends)}), view,
                                 interval=10.0, metrics=metrics, rng=_LowRng())
        watcher = _Watcher()
        scraper.watch(watcher)
        scraped: list[float] = []
        record = view.record
        view.record = lambda name, figures: (scraped.append(time.monotonic()), record(name, figures))
        task = asyncio.create_task(scraper._loop(backends[0]))
        await asyncio.sleep(0.1)
        assert len(scraped) == 1 and watcher.preempted == []  # unwatched: the 10 s interval
        watcher.on = True
        await asyncio.sleep(0.3)
        assert len(scraped) >= 4 and len(watcher.preempted) >= 3  # cut short, read on and on
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await http.aclose()
        server.server.close()

    asyncio.run(main())
