"""GET /metrics: Prometheus exposition, for the admin token or a key with the monitor scope."""

from __future__ import annotations

from fastapi import APIRouter, Request
from prometheus_client import CONTENT_TYPE_LATEST
from starlette.responses import Response

from .. import admin_token
from ..deps import ServicesDep
from ..tenancy.records import Scope

router = APIRouter(tags=["monitoring"])


@router.get("/metrics", summary="Prometheus metrics (admin token or a `monitor`-scoped key)",
            responses={401: {"description": "No admin token or monitor key"},
                       403: {"description": "The key lacks the monitor scope"}})
async def metrics(request: Request, services: ServicesDep) -> Response:
    if not admin_token.matches(admin_token.presented(request), services.settings.admin_token):
        principal = await services.auth.authenticate(request.headers.get("authorization"))
        principal.require(Scope.MONITOR)
    return Response(services.metrics.exposition(), media_type=CONTENT_TYPE_LATEST)
