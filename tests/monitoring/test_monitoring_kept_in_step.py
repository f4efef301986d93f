"""Kept in step: every metric an alert rule or a dashboard uses is exported by its source.

Sources: vLLM (`vllm:*`: a real vLLM 0.32 /metrics capture, and the real CPU server when the
vllm marker is selected), the exporters (DCGM_*, redis_*, nginx_*: the names compiled in
monitoring/exporter-metrics.txt), Prometheus itself (`up`), and the gateway (everything else:
its live /metrics after some traffic). So no panel or alert is silently empty.
"""

from __future__ import annotations

import httpx
import pytest

from promql_names import (ROOT, exporter_metric_names, exposition_names, is_exported,
                          metric_names, used_metric_names)

VLLM_CAPTURE = ROOT / "tests" / "simulator" / "vllm_captures" / "metrics_chat.txt"
EXPORTER_PREFIXES = {"DCGM_": "dcgm", "redis_": "redis", "nginx_": "nginx"}


def source_of(name: str) -> str:
    if name.startswith("vllm:"):
        return "vllm"
    for prefix, source in EXPORTER_PREFIXES.items():
        if name.startswith(prefix):
            return source
    if name in exporter_metric_names()["prometheus"]:
        return "prometheus"
    return "gateway"


def used_by(source: str) -> dict[str, set[str]]:
    return {name: where for name, where in used_metric_names().items()
            if source_of(name) == source}


def missing_report(missing: dict[str, set[str]], source: str) -> str:
    lines = [f"{len(missing)} metric(s) used but not exported by {source}:"]
    for name in sorted(missing):
        lines.append(f"  {name}  (used in: {'; '.join(sorted(missing[name]))})")
    return "\n".join(lines)


# -- the reader itself ---------------------------------------------------------------------
@pytest.mark.parametrize("expr, names", [
    ('sum by (route) (rate(inference_requests_total{status=~"5.."}[5m]))',
     {"inference_requests_total"}),
    ("histogram_quantile(0.99, sum by (route, le) (rate(x_seconds_bucket{a=\"b{c}\"}[5m])))",
     {"x_seconds_bucket"}),
    ("count(max by (backend) (llmgw_circuit_breaker_state) == 2) or vector(0)",
     {"llmgw_circuit_breaker_state"}),
    ("DCGM_FI_DEV_FB_USED / (DCGM_FI_DEV_FB_USED + DCGM_FI_DEV_FB_FREE) > 0.97",
     {"DCGM_FI_DEV_FB_USED", "DCGM_FI_DEV_FB_FREE"}),
    ("sum(rate(vllm:prompt_tokens_total[5m] offset 1h)) * 1e6 unless on (instance) up",
     {"vllm:prompt_tokens_total", "up"}),
    ("a_total / ignoring (x) group_left (y) b_total and sum(c) without (d)",
     {"a_total", "b_total", "c"}),
    ("absent(up{job=\"gateway\"} == 1)", {"up"}),
    ("max_over_time(g[5m:1m])", {"g"}),
])
def test_metric_names_from_promql(expr, names):
    assert metric_names(expr) == names


def test_every_used_metric_has_a_known_source():
    used = used_metric_names()
    assert len(used) >= 30
    sources = {source_of(name) for name in used}
    assert sources == {"vllm", "dcgm", "redis", "nginx", "prometheus", "gateway"}


# -- exporters -----------------------------------------------------------------------------
@pytest.mark.parametrize("source", ["dcgm", "redis", "nginx", "prometheus"])
def test_exporter_metrics_exist(source):
    exported = exporter_metric_names()[source]
    missing = {n: w for n, w in used_by(source).items() if not is_exported(n, exported)}
    assert not missing, missing_report(missing, f"{source} (monitoring/exporter-metrics.txt)")


def test_exporter_list_is_well_formed():
    sections = exporter_metric_names()
    assert set(sections) == {"dcgm", "redis", "nginx", "prometheus"}
    for source, names in sections.items():
        prefix = {v: k for k, v in EXPORTER_PREFIXES.items()}.get(source)
        assert names and all(prefix is None or n.startswith(prefix) for n in names), source


# -- vLLM ----------------------------------------------------------------------------------
def vllm_missing(metrics_text: str) -> dict[str, set[str]]:
    exported = exposition_names(metrics_text)
    return {n: w for n, w in used_by("vllm").items() if not is_exported(n, exported)}


def test_vllm_metrics_exist_in_the_real_vllm_capture():
    raw = VLLM_CAPTURE.read_text(encoding="utf-8")
    body = raw.split("\n\n", 1)[1]  # drop the captured HTTP status line and headers
    assert "vllm:num_requests_running" in body
    missing = vllm_missing(body)
    assert not missing, missing_report(missing, "vLLM 0.32 (metrics_chat.txt capture)")


@pytest.mark.vllm
def test_vllm_metrics_exist_in_the_running_vllm(vllm_stack):
    resp = httpx.get(vllm_stack.backend_url("chat0") + "/metrics", timeout=30)
    assert resp.status_code == 200
    missing = vllm_missing(resp.text)
    assert not missing, missing_report(missing, "the running vLLM (chat0)")


# -- the gateway ---------------------------------------------------------------------------
def drive_traffic(stack) -> None:
    """One request on every endpoint, a stream, and a refusal, so labelled series exist."""
    messages = [{"role": "user", "content": "Say hello"}]
    with httpx.Client(base_url=stack.base_url, headers=stack.auth, timeout=60) as client:
        calls = [("/v1/chat/completions", {"model": "qwen", "messages": messages, "max_tokens": 4}),
                 ("/v1/completions", {"model": "qwen", "prompt": "Once", "max_tokens": 4}),
                 ("/v1/text2sql", {"messages": messages, "max_tokens": 4}),
                 ("/v1/embeddings", {"model": "snowflake-arctic-embed", "input": "hello"}),
                 ("/v1/rerank", {"model": "bge-reranker-v2-m3", "query": "capital of France",
                                 "documents": ["Paris", "blue sky"]})]
        for path, body in calls:
            assert client.post(path, json=body).status_code == 200, path
        stream = {"model": "qwen", "messages": messages, "max_tokens": 4, "stream": True}
        with client.stream("POST", "/v1/chat/completions", json=stream) as resp:
            assert resp.status_code == 200
            assert "[DONE]" in "".join(resp.iter_text())
        refused = client.post("/v1/chat/completions", json=calls[0][1],
                              headers={"Authorization": "Bearer sk-not-a-key"})
        assert refused.status_code == 401


def test_gateway_metrics_exist_in_the_live_gateway(sim_stack):
    """The gateway's /metrics (admin token) after traffic. Labelled series exist only once a
    label set is used, so the gateway must create its bounded label sets (backends, pools,
    routes, reasons, Redis operations) at start-up for rarely-hit series to be present."""
    drive_traffic(sim_stack)
    resp = httpx.get(sim_stack.base_url + "/metrics", timeout=30,
                     headers={"Authorization": f"Bearer {sim_stack.admin_token}"})
    assert resp.status_code == 200, f"GET /metrics with the admin token: {resp.status_code}"
    exported = exposition_names(resp.text)
    missing = {n: w for n, w in used_by("gateway").items() if not is_exported(n, exported)}
    assert not missing, missing_report(missing, "the gateway's /metrics")
