"""Reading every backend's /metrics on an interval, off the request path, into the state view."""

from __future__ import annotations

import asyncio
import logging
import math
import random
from typing import Protocol

import anyio

from ..backend_http import BackendHTTP, BackendHTTPError
from ..observability.metrics import Metrics
from ..routing import Backend, RoutingTable
from .parse import NotVLLMMetrics, parse
from .view import StateView

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 4 * 1024 * 1024  # a real vLLM body is ~60 KB; more is not worth reading
MAX_TIMEOUT_SECS = 2.0  # a scrape may take its interval, but no longer than this
JITTER = 0.2  # each wait is the interval +-20%, so workers do not scrape in step


class Watcher(Protocol):
    watch_secs: float

    def watching(self, backend: str) -> bool: ...

    def preempt(self, backend: Backend) -> int: ...


class ScrapeFailed(Exception):
    """The backend answered, but not with something to read (a status other than 200, too big)."""


class MetricsScraper:
    """One loop per backend, each on its own: a hung /metrics delays no other backend's, and
    nothing here is awaited by a request. Every failure ends up in the view's `error`, never
    raised: a scrape that fails leaves the last good figures to age (StateView.failed).
    """

    def __init__(self, http: BackendHTTP, routing: RoutingTable, view: StateView, *,
                 interval: float, metrics: Metrics, rng: random.Random | None = None) -> None:
        self._http, self._view, self._metrics = http, view, metrics
        self._interval = interval
        self._timeout = min(interval, MAX_TIMEOUT_SECS)
        self._rng = rng or random.Random()
        self._pool_of = {b.name: p.name for p in routing.pools.values() for b in p.backends}
        self._watcher: Watcher | None = None
        self._backends = [b for p in routing.pools.values() for b in p.backends]

    async def run(self) -> None:
        """Scrape forever (nothing at an interval of 0); cancelled by the lifespan at shutdown."""
        if self._interval <= 0:
            return
        async with anyio.create_task_group() as tg:
            for backend in self._backends:
                tg.start_soon(self._loop, backend)

    def watch(self, watcher: "Watcher") -> None:
        """Read a backend every `watcher.watch_secs` while the watcher says it watches it, and
        let it act on each fresh read (batches/lane.py: batch lines yield to realtime)."""
        self._watcher = watcher

    async def _loop(self, backend: Backend) -> None:
        await anyio.sleep(self._rng.uniform(0, self._interval))  # spread workers and backends
        while True:
            await self.scrape(backend)
            if self._watcher is not None and self._watcher.watching(backend.name):
                self._watcher.preempt(backend)
            await self._wait(backend)

    async def _wait(self, backend: Backend) -> None:
        """The interval (with jitter), cut short as soon as the watcher watches the backend."""
        interval = self._interval * self._rng.uniform(1 - JITTER, 1 + JITTER)
        if self._watcher is None:
            await anyio.sleep(interval)
            return
        waited, step = 0.0, min(self._watcher.watch_secs, interval)
        while waited < interval:
            await anyio.sleep(step)
            waited += step
            if self._watcher.watching(backend.name):
                return

    async def scrape(self, backend: Backend) -> None:
        """One scrape of one backend into the view and the gauges; never raises (but on cancel)."""
        name = backend.name
        try:
            async with asyncio.timeout(self._timeout):
                body = await self._fetch(backend)
            self._view.record(name, parse(body))
        except TimeoutError:
            self._failed(name, f"no answer within {self._timeout:g} s")
        except (BackendHTTPError, ScrapeFailed, NotVLLMMetrics) as exc:
            self._failed(name, f"{type(exc).__name__}: {exc}"[:200])
        except Exception as exc:  # a bug here must not end the loop (nor, raised, the worker)
            log.exception("scraping %s failed unexpectedly", name)
            self._failed(name, f"unexpected {type(exc).__name__}")
        self._publish(name)

    async def _fetch(self, backend: Backend) -> bytes:
        resp = await self._http.request(backend.origin, b"GET", b"/metrics", b"", b"",
                                        read_timeout=self._timeout)
        try:
            if resp.status != 200:
                raise ScrapeFailed(f"status {resp.status}")
            chunks, size = [], 0
            async for chunk in resp.chunks():
                size += len(chunk)
                if size > MAX_BODY_BYTES:
                    raise ScrapeFailed(f"body over {MAX_BODY_BYTES} bytes")
                chunks.append(chunk)
            return b"".join(chunks)
        finally:
            resp.close()  # unread (not 200, too big): the connection is closed, not reused

    def _failed(self, name: str, error: str) -> None:
        self._view.failed(name, error)
        self._metrics.backend_scrape_failures.labels(name, self._pool_of[name]).inc()

    def _publish(self, name: str) -> None:
        """The gauges as this worker sees the backend: NaN for figures it would not act on."""
        labels, m = (name, self._pool_of[name]), self._metrics
        state = self._view.fresh(name)
        for gauge, value in ((m.backend_running, state and state.running),
                             (m.backend_waiting, state and state.waiting),
                             (m.backend_kv_usage, state and state.kv_usage),
                             (m.backend_prefix_hit_ratio, state and state.prefix_hit_ratio)):
            gauge.labels(*labels).set(math.nan if value is None else value)
        m.backend_state_age.labels(*labels).set(self._view.age(name))
