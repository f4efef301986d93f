"""Active health checks: probe every backend's /health on an interval and keep `healthy` current."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import anyio

from .backend_http import (BackendHTTP, BackendHTTPError, ConnectionDropped, ConnectTimeout,
                           ReadTimeout)
from .observability.metrics import Metrics
from .routing import Backend, RoutingTable

SLOW_PROBES = 2  # probes in a row that time out before a backend counts as down


class HealthMonitor:
    """Keeps each backend's `healthy` flag, which the balancer uses to skip dead backends.

    vLLM answers /health with 200 only once its engine is ready (it refuses connections or
    answers 503 while loading), so a loading backend counts as not ready.

    A refused connection on the request path is the same evidence a failed probe gives, seen
    earlier: `mark_down` takes the backend out at once (a dead backend refuses instantly, so
    with no requests in flight the least-busy balancer would keep choosing it). Only a passing
    probe puts a backend back; listeners hear of it (`when_ready`) to let traffic in promptly.
    """

    def __init__(self, http: BackendHTTP, routing: RoutingTable, *,
                 interval: float, timeout: float, metrics: Metrics) -> None:
        self._http = http
        self._backends = [b for pool in routing.pools.values() for b in pool.backends]
        self._interval = interval
        self._timeout = timeout
        self._metrics = metrics
        self._pool_of = {b.name: pool.name for pool in routing.pools.values() for b in pool.backends}
        self.healthy: dict[str, bool] = {b.name: True for b in self._backends}
        # Bumped by mark_down: a probe that started before it must not overwrite it.
        self._generation: dict[str, int] = {b.name: 0 for b in self._backends}
        self._listeners: list[Callable[[Backend], None]] = []
        self._after_round: list[Callable[[], None]] = []
        self._slow: dict[str, int] = {b.name: 0 for b in self._backends}  # timeouts in a row

    def when_ready(self, listener: Callable[[Backend], None]) -> None:
        """Call `listener(backend)` each time a backend that was not ready passes a probe."""
        self._listeners.append(listener)

    def mark_down(self, name: str) -> None:
        """Out of rotation until a probe started after this passes (a refused connection)."""
        self._generation[name] += 1
        self._set(name, False)

    def _set(self, name: str, ok: bool) -> bool:
        """Record a state; True if the backend has just become ready."""
        was, self.healthy[name] = self.healthy[name], ok
        self._metrics.backend_up.labels(name, self._pool_of[name]).set(1 if ok else 0)
        return ok and not was

    def is_healthy(self, backend: Backend) -> bool:
        return self.healthy.get(backend.name, False)

    async def _probe(self, backend: Backend) -> None:
        generation, name = self._generation[backend.name], backend.name
        slow = False
        try:
            async with asyncio.timeout(self._timeout):
                try:
                    status = await self._get_health(backend)
                except ConnectionDropped:
                    # A kept-alive connection the backend had just closed: no verdict on the
                    # backend. Once more, on a connection of its own.
                    status = await self._get_health(backend)
            ok = status == 200
        except (TimeoutError, ConnectTimeout, ReadTimeout):
            ok = slow = True
        except BackendHTTPError:
            ok = False
        if self._generation[name] != generation:
            return  # marked down while this probe ran: that is the newer evidence
        # A busy backend (or a busy gateway, e.g. a worker booting during a reload) can miss
        # one probe's time limit; that alone is no verdict. A refusal or an answer other than
        # 200 is. A hung backend is out after SLOW_PROBES probes, or sooner by its breaker.
        self._slow[name] = self._slow[name] + 1 if slow else 0
        if slow:
            ok = self.healthy[name] and self._slow[name] < SLOW_PROBES
        if self._set(backend.name, ok):
            for listener in self._listeners:
                listener(backend)

    async def _get_health(self, backend: Backend) -> int:
        resp = await self._http.request(backend.origin, b"GET", b"/health", b"", b"",
                                        read_timeout=self._timeout)
        try:
            await resp.read()
        finally:
            resp.close()
        return resp.status

    async def probe_all(self) -> None:
        async with anyio.create_task_group() as tg:
            for backend in self._backends:
                tg.start_soon(self._probe, backend)

    def after_round(self, listener: Callable[[], None]) -> None:
        """Call `listener()` after each round of probes (work batched per interval)."""
        self._after_round.append(listener)

    async def run(self) -> None:
        """Probe forever; cancelled by the lifespan at shutdown."""
        while True:
            await self.probe_all()
            for listener in self._after_round:
                listener()
            await anyio.sleep(self._interval)

    def summary(self, routing: RoutingTable) -> dict[str, dict[str, int]]:
        return {name: {"backends": len(pool.backends),
                       "healthy": sum(self.is_healthy(b) for b in pool.backends)}
                for name, pool in routing.pools.items()}
