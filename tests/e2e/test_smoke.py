"""`gatewayctl smoke` against running platforms: a healthy one passes, a broken one fails loudly."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import httpx

CTL = str(Path(sys.executable).with_name("gatewayctl"))


def _smoke(base_url: str, token: str | None, *extra: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "ADMIN_TOKEN"}
    if token:
        env["ADMIN_TOKEN"] = token
    return subprocess.run([CTL, "smoke", "--base-url", base_url, *extra], env=env,
                          capture_output=True, text=True, timeout=120)


def test_smoke_passes_on_a_healthy_platform_and_cleans_up(sim_stack):
    with sim_stack.admin() as admin:
        before = admin.get("/admin/orgs", params={"limit": 500}).json()["total"]
    proc = _smoke(sim_stack.base_url, sim_stack.admin_token, "--json")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = json.loads(proc.stdout)
    names = [c["check"] for c in report["checks"]]
    assert names == ["health", "admin without token", "admin with a wrong token",
                     "create organisation and key", "models", "chat stream",
                     "chat (/v1/chat/completions)", "responses (/v1/responses)",
                     "messages (/v1/messages)", "count_tokens (/v1/messages/count_tokens)",
                     "completions (/v1/completions)",
                     "text2sql (/v1/text2sql)", "embeddings (/v1/embeddings)",
                     "pooling (/pooling)", "cohere_embed (/v2/embed)", "classify (/classify)",
                     "rerank (/v1/rerank)", "score (/v1/score)", "tokenize (/tokenize)",
                     "detokenize (/detokenize)", "limit refusal",
                     "clean up"]
    details = {c["check"]: c["detail"] for c in report["checks"]}
    assert report["ok"] and "limit_rpm" in details["limit refusal"]
    for row in ("rerank (/v1/rerank)", "pooling (/pooling)", "cohere_embed (/v2/embed)",
                "classify (/classify)"):
        assert details[row].startswith("ok ("), details  # a model served it
    with sim_stack.admin() as admin:
        assert admin.get("/admin/orgs", params={"limit": 500}).json()["total"] == before


def test_smoke_fails_when_a_pool_is_broken(sim_stack):
    httpx.post(sim_stack.backend_url("rerank") + "/sim/faults", json={"error_rate": 1.0}).raise_for_status()
    try:
        proc = _smoke(sim_stack.base_url, sim_stack.admin_token)
    finally:
        httpx.post(sim_stack.backend_url("rerank") + "/sim/faults", json={"reset": True})
    assert proc.returncode == 1
    assert "FAIL  rerank" in proc.stdout and "ok    chat stream" in proc.stdout


def test_smoke_needs_the_admin_token(sim_stack):
    proc = _smoke(sim_stack.base_url, None)
    assert proc.returncode == 1 and "admin token" in proc.stderr
