"""GET /metrics: Prometheus exposition, for the admin token or a key with the monitor scope."""

from __future__ import annotations

from fastapi import APIRouter, Depends
from prometheus_client import CONTENT_TYPE_LATEST
from starlette.responses import Response

from redis.exceptions import RedisError

from ..batches.report import exposition as batch_exposition
from ..deps import BatchesDep, MONITOR_ERRORS, MetricsDep, RedisDep, RoutingDep, require_monitor

router = APIRouter(tags=["monitoring"])


@router.get("/metrics", summary="Prometheus metrics (admin token or a `monitor`-scoped key)",
            response_class=Response, dependencies=[Depends(require_monitor)],
            responses={200: {"description": "The Prometheus text exposition format.",
                             "content": {"text/plain": {"schema": {"type": "string"}}}},
                       **MONITOR_ERRORS})
async def metrics(batches: BatchesDep, metrics: MetricsDep, redis: RedisDep, routing: RoutingDep) -> Response:
    body = metrics.exposition()
    try:
        body += await batch_exposition(batches, redis,
                                       capacity=routing.total_seqs,
                                       tenant_labels=metrics.tenant_labels)
    except (RedisError, OSError):
        pass  # the gateway's own figures still answer while Redis is away
    return Response(body, media_type=CONTENT_TYPE_LATEST)
