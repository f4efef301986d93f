"""Per request, once, at its end: the metrics and the one structured access line.

A pure ASGI middleware (no buffering of streams): it sees when the answer started and ended,
and reads everything else from the request's Trace, filled in along the request path.
"""

from __future__ import annotations

import time

import structlog

from ..endpoints import ENDPOINTS
from .metrics import REASONS, Metrics
from .trace import Trace

ROUTE_OF_PATH = {**{path: e.name for e in ENDPOINTS for path in e.paths}, "/v1/models": "models"}
INFERENCE = frozenset(e.name for e in ENDPOINTS)
QUIET = frozenset(("/livez", "/healthz", "/health", "/metrics"))  # probes: no access line


def _route(path: str) -> str:
    if path in ROUTE_OF_PATH:
        return ROUTE_OF_PATH[path]
    if path.startswith("/v1/models/"):
        return "models"
    if path.startswith("/v1/responses/"):
        return "responses"
    if path == "/v1/files" or path.startswith("/v1/files/"):
        return "files"
    return "admin" if path.startswith("/admin") else "other"


class AccessMiddleware:
    def __init__(self, app) -> None:
        self.app = app
        self.log = structlog.get_logger("llmgw.access")

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        began = time.perf_counter()
        trace = Trace(scope["state"]["request_id"], route=_route(scope["path"]))
        scope["state"]["trace"] = trace
        marks = {"status": 500, "start": None, "first_body": None, "end": None}

        async def observe(message) -> None:
            if message["type"] == "http.response.start":
                marks["status"], marks["start"] = message["status"], time.perf_counter()
            elif message["type"] == "http.response.body":
                if marks["first_body"] is None and message.get("body"):
                    marks["first_body"] = time.perf_counter()
                if not message.get("more_body"):
                    marks["end"] = time.perf_counter()
            await send(message)

        metrics = getattr(getattr(scope["app"].state, "services", None), "metrics", None)
        if metrics is not None and trace.route in INFERENCE:
            metrics.in_flight.labels(trace.route).inc()
        try:
            await self.app(scope, receive, observe)
        finally:
            if metrics is not None and trace.route in INFERENCE:
                metrics.in_flight.labels(trace.route).dec()
            self._record(scope, trace, metrics, began, marks)

    def _record(self, scope, trace: Trace, metrics: Metrics | None, began: float, marks: dict) -> None:
        end = marks["end"] or time.perf_counter()
        first = marks["start"] or end
        status = marks["status"]
        if metrics is not None and trace.route in INFERENCE:
            metrics.requests.labels(trace.route, trace.model, *metrics.org(trace.org), str(status)).inc()
            metrics.latency.labels(trace.route, trace.model).observe(end - began)
            metrics.overhead.labels(trace.route).observe(max(0.0, first - began - trace.upstream_secs))
            if trace.backend:
                metrics.upstream.labels(trace.backend, trace.route).observe(trace.upstream_secs)
            if trace.stream and marks["first_body"]:
                metrics.ttft.labels(trace.route, trace.model).observe(marks["first_body"] - began)
        if metrics is not None and trace.error_code in REASONS:
            metrics.rejections.labels(*metrics.org(trace.org), trace.error_code).inc()
        if scope["path"] in QUIET:
            return
        self.log.info("request", request_id=trace.request_id, method=scope["method"],
                      path=scope["path"], route=trace.route, model=trace.model, org=trace.org,
                      key_id=trace.key_id, backend=trace.backend, status=status,
                      prompt_tokens=trace.prompt_tokens, completion_tokens=trace.completion_tokens,
                      latency_ms=round((end - began) * 1000, 2),
                      ttft_ms=round(((marks["first_body"] or first) - began) * 1000, 2),
                      stream=trace.stream, cache=trace.cache,
                      retries=trace.retries, error=trace.error_code,
                      **({"content": trace.content} if trace.content is not None else {}))
