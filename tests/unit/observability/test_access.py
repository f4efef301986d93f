"""The access middleware around a tiny ASGI app: routes named from paths, the request metrics
of inference routes (status, latency, overhead, upstream time, time to the first streamed
byte, rejections), one access line per request but none for probes, and a 500 recorded for an
app that fails before answering."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import pytest
from structlog.testing import capture_logs

from llmgw.observability.access import AccessMiddleware, _route
from llmgw.observability.metrics import Metrics


@pytest.mark.parametrize("path,route", [
    ("/v1/chat/completions", "chat"), ("/v1/embeddings", "embeddings"), ("/v1/models", "models"),
    ("/v1/models/qwen", "models"), ("/v1/responses/resp_1", "responses"), ("/v1/files", "files"),
    ("/v1/files/file-1/content", "files"), ("/v1/filesystem", "other"), ("/admin/orgs", "admin"),
    ("/livez", "other"), ("/", "other"),
])
def test_routes_are_named_from_paths(path, route):
    assert _route(path) == route


def _serve(app, path: str, metrics: Metrics | None):
    """One request through the middleware: (messages sent, access lines logged, trace)."""
    sent = []
    scope = {"type": "http", "method": "POST", "path": path, "state": {"request_id": "rid-1"},
             "app": SimpleNamespace(state=SimpleNamespace(services=SimpleNamespace(metrics=metrics)))}

    async def receive():
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message):
        sent.append(message)

    async def go():
        with capture_logs() as logs:
            try:
                await AccessMiddleware(app)(scope, receive, send)
            except RuntimeError:
                pass
        return logs
    logs = asyncio.run(go())
    return sent, logs, scope["state"]["trace"]


def _streaming_app(status: int = 200):
    async def app(scope, receive, send):
        trace = scope["state"]["trace"]
        trace.model, trace.org, trace.backend, trace.stream = "Qwen", "org_a", "chat0", True
        trace.upstream_secs, trace.prompt_tokens, trace.completion_tokens = 0.001, 3, 2
        await send({"type": "http.response.start", "status": status, "headers": []})
        await send({"type": "http.response.body", "body": b"", "more_body": True})
        await send({"type": "http.response.body", "body": b"data: x\n\n", "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})
    return app


def _sample(metrics: Metrics, name: str, labels: dict) -> float | None:
    return metrics.registry.get_sample_value(name, labels)


def test_an_inference_request_is_measured_and_logged_once():
    metrics = Metrics(tenant_labels=True)
    sent, logs, trace = _serve(_streaming_app(), "/v1/chat/completions", metrics)
    assert [m["type"] for m in sent] == ["http.response.start"] + ["http.response.body"] * 3
    assert trace.route == "chat" and trace.request_id == "rid-1"
    assert _sample(metrics, "inference_requests_total",
                   {"route": "chat", "model": "Qwen", "org": "org_a", "status": "200"}) == 1
    assert _sample(metrics, "inference_latency_seconds_count", {"route": "chat", "model": "Qwen"}) == 1
    assert _sample(metrics, "llmgw_gateway_overhead_seconds_count", {"route": "chat"}) == 1
    assert _sample(metrics, "llmgw_upstream_latency_seconds_sum", {"backend": "chat0", "route": "chat"}) == 0.001
    assert _sample(metrics, "llmgw_time_to_first_token_seconds_count", {"route": "chat", "model": "Qwen"}) == 1
    assert _sample(metrics, "llmgw_requests_in_flight", {"route": "chat"}) == 0  # up, then down
    [line] = logs
    assert line["event"] == "request" and line["log_level"] == "info"
    assert {k: line[k] for k in ("request_id", "method", "path", "route", "model", "org", "backend",
                                 "status", "prompt_tokens", "completion_tokens", "stream", "cache",
                                 "retries", "error")} == {
        "request_id": "rid-1", "method": "POST", "path": "/v1/chat/completions", "route": "chat",
        "model": "Qwen", "org": "org_a", "backend": "chat0", "status": 200, "prompt_tokens": 3,
        "completion_tokens": 2, "stream": True, "cache": None, "retries": 0, "error": None}
    assert line["ttft_ms"] <= line["latency_ms"] and "content" not in line


def test_a_rejection_is_counted_by_its_reason():
    async def app(scope, receive, send):
        trace = scope["state"]["trace"]
        trace.org, trace.error_code = "org_b", "limit_rpm"
        await send({"type": "http.response.start", "status": 429, "headers": []})
        await send({"type": "http.response.body", "body": b"{}"})
    metrics = Metrics(tenant_labels=False)
    _, logs, _ = _serve(app, "/v1/embeddings", metrics)
    assert _sample(metrics, "llmgw_rejections_total", {"reason": "limit_rpm"}) == 1
    assert _sample(metrics, "inference_requests_total",
                   {"route": "embeddings", "model": "-", "status": "429"}) == 1
    assert _sample(metrics, "llmgw_time_to_first_token_seconds_count",
                   {"route": "embeddings", "model": "-"}) is None  # not a stream
    assert logs[0]["status"] == 429 and logs[0]["error"] == "limit_rpm"


def test_an_app_that_fails_before_answering_is_recorded_as_a_500():
    async def app(scope, receive, send):
        raise RuntimeError("boom")
    metrics = Metrics(tenant_labels=False)
    sent, logs, _ = _serve(app, "/v1/chat/completions", metrics)
    assert sent == [] and logs[0]["status"] == 500
    assert _sample(metrics, "inference_requests_total",
                   {"route": "chat", "model": "-", "status": "500"}) == 1
    assert _sample(metrics, "llmgw_requests_in_flight", {"route": "chat"}) == 0


def test_probes_are_not_logged_and_other_routes_not_measured():
    metrics = Metrics(tenant_labels=False)
    _, probe_logs, _ = _serve(_streaming_app(), "/healthz", metrics)
    _, admin_logs, _ = _serve(_streaming_app(), "/admin/orgs", metrics)
    assert probe_logs == [] and admin_logs[0]["route"] == "admin"
    families = {s.name for f in metrics.registry.collect() for s in f.samples
                if s.name.startswith("inference_requests_total")}
    assert families == set()  # no inference route: no request metric


def test_content_is_logged_only_when_set_and_non_http_passes_through():
    async def app(scope, receive, send):
        if scope["type"] == "http":
            scope["state"]["trace"].content = "the prompt"
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})
    _, logs, _ = _serve(app, "/v1/chat/completions", None)  # no metrics: still a log line
    assert logs[0]["content"] == "the prompt"

    seen = []

    async def lifespan_app(scope, receive, send):
        seen.append(scope)
    asyncio.run(AccessMiddleware(lifespan_app)({"type": "lifespan"}, None, None))
    assert seen == [{"type": "lifespan"}]  # no trace, no state touched
