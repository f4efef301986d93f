"""Active health checks: probe every backend's /health on an interval and keep `healthy` current."""

from __future__ import annotations

import aiohttp
import anyio

from .observability.metrics import Metrics
from .routing import Backend, RoutingTable


class HealthMonitor:
    """Keeps each backend's `healthy` flag, which the balancer uses to skip dead backends.

    vLLM answers /health with 200 only once its engine is ready (it refuses connections or
    answers 503 while loading), so a loading backend counts as not ready.
    """

    def __init__(self, session: aiohttp.ClientSession, routing: RoutingTable, *,
                 interval: float, timeout: float, metrics: Metrics) -> None:
        self._session = session
        self._backends = [b for pool in routing.pools.values() for b in pool.backends]
        self._interval = interval
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._metrics = metrics
        self._pool_of = {b.name: pool.name for pool in routing.pools.values() for b in pool.backends}
        self.healthy: dict[str, bool] = {b.name: True for b in self._backends}

    def is_healthy(self, backend: Backend) -> bool:
        return self.healthy.get(backend.name, False)

    async def _probe(self, backend: Backend) -> None:
        try:
            async with self._session.get(backend.url + "/health", timeout=self._timeout) as resp:
                ok = resp.status == 200
        except (aiohttp.ClientError, TimeoutError):
            ok = False
        self.healthy[backend.name] = ok
        self._metrics.backend_up.labels(backend.name, self._pool_of[backend.name]).set(1 if ok else 0)

    async def probe_all(self) -> None:
        async with anyio.create_task_group() as tg:
            for backend in self._backends:
                tg.start_soon(self._probe, backend)

    async def run(self) -> None:
        """Probe forever; cancelled by the lifespan at shutdown."""
        while True:
            await self.probe_all()
            await anyio.sleep(self._interval)

    def summary(self, routing: RoutingTable) -> dict[str, dict[str, int]]:
        return {name: {"backends": len(pool.backends),
                       "healthy": sum(self.is_healthy(b) for b in pool.backends)}
                for name, pool in routing.pools.items()}
