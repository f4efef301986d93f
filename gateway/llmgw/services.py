"""The long-lived objects a worker serves with, built in the lifespan and torn down with it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
import time
from dataclasses import dataclass, field

import anyio
import httpx

from .balancer import LeastInFlightBalancer
from .health import HealthMonitor
from .routing import RoutingTable
from .settings import Settings
from .upstream import Upstream, build_client


@dataclass
class Services:
    settings: Settings
    routing: RoutingTable
    client: httpx.AsyncClient
    health: HealthMonitor
    upstream: Upstream
    draining: bool = False
    routing_loaded_at: int = field(default_factory=lambda: int(time.time()))


@asynccontextmanager
async def running_services(settings: Settings, routing: RoutingTable) -> AsyncIterator[Services]:
    """Open the HTTP pool, probe backends once (so readiness is true from the start), run."""
    async with build_client(settings) as client:
        health = HealthMonitor(client, routing, interval=settings.health_check_interval_secs,
                               timeout=settings.health_probe_timeout_secs)
        balancer = LeastInFlightBalancer(eligible=health.is_healthy)
        services = Services(settings, routing, client, health, Upstream(client, balancer, settings))
        await health.probe_all()
        async with anyio.create_task_group() as tg:
            tg.start_soon(health.run)
            try:
                yield services
            finally:
                services.draining = True
                tg.cancel_scope.cancel()
