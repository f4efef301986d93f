"""Liveness, readiness and build information."""

from __future__ import annotations

import anyio
from redis.exceptions import RedisError
from fastapi import APIRouter, Depends
from starlette.responses import JSONResponse

from .. import __version__
from ..deps import MONITOR_ERRORS, ServicesDep, require_monitor
from ..openapi import MONITOR
from ..services import Services

router = APIRouter(tags=["system"])


@router.get("/livez", summary="The process is up")
async def livez() -> dict:
    return {"status": "alive"}


@router.get("/healthz", summary="Ready to serve: not draining and at least one backend healthy",
            responses={503: {"description": "Not ready: the same body, status `not_ready`",
                             "content": {"application/json": {"schema": {"type": "object"}}}}})
async def healthz(services: ServicesDep) -> JSONResponse:
    pools = services.health.summary(services.routing)
    serving = any(p["healthy"] for p in pools.values())
    ready = serving and not services.draining
    degraded = [name for name, p in pools.items() if not p["healthy"]]
    status = "ready" if ready and not degraded else ("degraded" if ready else "not_ready")
    limiter = "ok" if await services.admission.check() else "degraded"
    return JSONResponse({"status": status, "pools": pools, "limiter": limiter},
                        status_code=200 if ready else 503)


def _serving(services: Services) -> bool:
    return not services.draining and any(p["healthy"] for p in services.health.summary(services.routing).values())


@router.get("/health", summary="Public and minimal: can the gateway serve?",
            responses={503: {"description": "Unavailable: the same body, status `unavailable`",
                             "content": {"application/json": {"schema": {"type": "object"}}}}})
async def health(services: ServicesDep) -> JSONResponse:
    ok = _serving(services)
    return JSONResponse({"status": "ok" if ok else "unavailable"}, status_code=200 if ok else 503)


@router.get("/health/detailed", summary="Every backend's health, breaker, suspicion, load, "
            "state view and queue, and Redis (admin token or a `monitor`-scoped key)",
            responses=MONITOR_ERRORS, dependencies=[Depends(require_monitor)],
            openapi_extra={"security": MONITOR})
async def health_detailed(services: ServicesDep) -> JSONResponse:
    breakers, balancer = services.breakers.snapshot(), services.upstream.balancer
    suspects = services.suspects.snapshot()  # latest try failed: no first tries for a while
    pools = {name: {"queued": services.queue.depth(name),
                    "backends": [{"name": b.name, "healthy": services.health.is_healthy(b),
                                  "breaker": breakers[b.name],
                                  "suspect": suspects.get(b.name, False), "in_flight": b.in_flight,
                                  "prefill_pending": b.prefill_pending,
                                  "capacity": balancer.capacity(b),
                                  "state": services.state.snapshot(b.name)}
                                 for b in pool.backends]}
             for name, pool in services.routing.pools.items()}
    return JSONResponse({"status": "ok" if _serving(services) else "unavailable",
                         "draining": services.draining, "pools": pools,
                         "redis": await _redis(services),
                         "batch_runners": await _runners(services)})


async def _runners(services: Services) -> list[dict] | None:
    """The batch runners' heartbeats (None when Redis cannot say)."""
    try:
        return await services.batches.runners(services.batches.now())
    except (RedisError, OSError):
        return None


async def _redis(services: Services) -> str:
    try:
        with anyio.fail_after(1.0):
            await services.redis.ping()
        return "ok"
    except Exception:  # any failure to answer is simply "unavailable" on a health page
        return "unavailable"


@router.get("/version", summary="Build information")
async def version(services: ServicesDep) -> dict:
    s = services.settings
    return {"version": __version__, "build_sha": s.build_sha, "build_time": s.build_time}
