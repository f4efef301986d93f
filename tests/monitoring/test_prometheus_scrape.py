"""A real Prometheus scrapes the gateway (4 gunicorn workers) and reads back what was sent."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import httpx
import pytest

from stacks import free_port

MSG = [{"role": "user", "content": "count me"}]


@pytest.fixture
def prometheus(sim_stack, tmp_path: Path):
    token = tmp_path / "token"
    token.write_text(sim_stack.admin_token)
    host = sim_stack.base_url.removeprefix("http://")
    (tmp_path / "prometheus.yml").write_text(f"""
global: {{scrape_interval: 1s, evaluation_interval: 1s}}
scrape_configs:
  - job_name: gateway
    authorization: {{type: Bearer, credentials_file: {token}}}
    static_configs: [{{targets: ["{host}"]}}]
""")
    port = free_port()
    proc = subprocess.Popen(["prometheus", f"--config.file={tmp_path / 'prometheus.yml'}",
                             f"--storage.tsdb.path={tmp_path / 'data'}",
                             f"--web.listen-address=127.0.0.1:{port}"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(100):
            try:
                if httpx.get(url + "/-/ready").status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def _query(url: str, promql: str) -> list[dict]:
    resp = httpx.get(url + "/api/v1/query", params={"query": promql}).json()
    assert resp["status"] == "success", resp
    return resp["data"]["result"]


def _wait_for(url: str, promql: str, expected, timeout: float = 20):
    deadline, got = time.monotonic() + timeout, None
    while time.monotonic() < deadline:
        got = {tuple(sorted(r["metric"].items())): float(r["value"][1]) for r in _query(url, promql)}
        if got == expected:
            return got
        time.sleep(0.5)
    return got


def test_prometheus_reads_back_counts_by_org_and_status(sim_stack, prometheus):
    a, b = sim_stack.create_org(), sim_stack.create_org()
    sent = {(a["org"]["id"], "200"): 7, (b["org"]["id"], "200"): 3, (b["org"]["id"], "404"): 2}
    with httpx.Client(base_url=sim_stack.base_url, timeout=30) as client:
        for (org_id, status), n in sent.items():
            key = a["api_key"] if org_id == a["org"]["id"] else b["api_key"]
            model = "qwen" if status == "200" else "no-such-model"
            for _ in range(n):  # spread over the 4 workers by the kernel
                resp = client.post("/v1/chat/completions", headers={"Authorization": f"Bearer {key}"},
                                   json={"model": model, "messages": MSG, "max_tokens": 2})
                assert resp.status_code == int(status)
    orgs = '|'.join((a["org"]["id"], b["org"]["id"]))
    expected = {(("org", o), ("status", s)): float(n) for (o, s), n in sent.items()}
    got = _wait_for(prometheus, f'sum by (org, status) (inference_requests_total{{org=~"{orgs}"}})', expected)
    assert got == expected
    latency = _query(prometheus, f'sum(inference_latency_seconds_count{{route="chat"}})')
    assert float(latency[0]["value"][1]) >= 12
    p99 = _query(prometheus, 'histogram_quantile(0.99, sum by (le) (inference_latency_seconds_bucket{route="chat"}))')
    assert 0 < float(p99[0]["value"][1]) < 300
    up = _query(prometheus, 'up{job="gateway"}')
    assert up[0]["value"][1] == "1"
