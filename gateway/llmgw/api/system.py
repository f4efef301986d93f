"""Liveness, readiness and build information."""

from __future__ import annotations

from fastapi import APIRouter
from starlette.responses import JSONResponse

from .. import __version__
from ..deps import ServicesDep

router = APIRouter(tags=["system"])


@router.get("/livez", summary="The process is up")
async def livez() -> dict:
    return {"status": "alive"}


@router.get("/healthz", summary="Ready to serve: not draining and at least one backend healthy",
            responses={503: {"description": "Not ready"}})
async def healthz(services: ServicesDep) -> JSONResponse:
    pools = services.health.summary(services.routing)
    serving = any(p["healthy"] for p in pools.values())
    ready = serving and not services.draining
    degraded = [name for name, p in pools.items() if not p["healthy"]]
    status = "ready" if ready and not degraded else ("degraded" if ready else "not_ready")
    limiter = "degraded" if services.admission.degraded else "ok"
    return JSONResponse({"status": status, "pools": pools, "limiter": limiter},
                        status_code=200 if ready else 503)


@router.get("/version", summary="Build information")
async def version(services: ServicesDep) -> dict:
    s = services.settings
    return {"version": __version__, "build_sha": s.build_sha, "build_time": s.build_time}
