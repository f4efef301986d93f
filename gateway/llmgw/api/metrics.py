"""GET /metrics: Prometheus exposition, for the admin token or a key with the monitor scope."""

from __future__ import annotations

from fastapi import APIRouter, Depends
from prometheus_client import CONTENT_TYPE_LATEST
from starlette.responses import Response

from ..deps import MONITOR_ERRORS, ServicesDep, require_monitor

router = APIRouter(tags=["monitoring"])


@router.get("/metrics", summary="Prometheus metrics (admin token or a `monitor`-scoped key)",
            response_class=Response, dependencies=[Depends(require_monitor)],
            responses={200: {"description": "The Prometheus text exposition format.",
                             "content": {"text/plain": {"schema": {"type": "string"}}}},
                       **MONITOR_ERRORS})
async def metrics(services: ServicesDep) -> Response:
    return Response(services.metrics.exposition(), media_type=CONTENT_TYPE_LATEST)
