"""Liveness, readiness, version, the OpenAPI description, start-up validation and dead backends."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from stacks import TestStack

ROOT = Path(__file__).resolve().parents[2]


def test_livez_healthz_version(sim_stack):
    base = sim_stack.base_url
    assert httpx.get(base + "/livez").json() == {"status": "alive"}
    health = httpx.get(base + "/healthz")
    assert health.status_code == 200 and health.json()["status"] == "ready"
    assert health.json()["pools"]["chat"] == {"backends": 2, "healthy": 2}
    version = httpx.get(base + "/version").json()
    assert set(version) == {"version", "build_sha", "build_time"}


def test_openapi_describes_requests_responses_and_errors(sim_stack):
    spec = httpx.get(sim_stack.base_url + "/openapi.json").json()
    schemas = spec["components"]["schemas"]
    for path, request_schema in [("/v1/chat/completions", "ChatCompletionRequest"),
                                 ("/v1/completions", "CompletionRequest"),
                                 ("/v1/embeddings", "EmbeddingRequest"),
                                 ("/v1/rerank", "RerankRequest"),
                                 ("/v1/text2sql", "Text2SQLRequest")]:
        op = spec["paths"][path]["post"]
        ref = op["requestBody"]["content"]["application/json"]["schema"]["$ref"]
        assert ref.endswith("/" + request_schema) and request_schema in schemas
        assert {"200", "400", "404", "413", "415", "502", "503", "504"} <= set(op["responses"])
        error_ref = op["responses"]["400"]["content"]["application/json"]["schema"]["$ref"]
        assert error_ref.endswith("/ErrorResponse")
    assert "messages" in schemas["ChatCompletionRequest"]["required"]
    assert "/v1/models" in spec["paths"] and "/healthz" in spec["paths"]
    assert httpx.get(sim_stack.base_url + "/docs").status_code == 200


def test_bad_settings_stop_gunicorn_with_a_clear_message():
    env = {**os.environ, "GATEWAY_WORKERS": "zero", "ROUTING_FILE": "/nonexistent.yaml"}
    proc = subprocess.run([str(Path(sys.executable).with_name("gunicorn")), "-c",
                           str(ROOT / "gateway" / "gunicorn.conf.py"), "llmgw.app:create_app()"],
                          env=env, capture_output=True, text=True, timeout=30)
    assert proc.returncode != 0
    assert "invalid gateway settings" in proc.stderr
    assert "GATEWAY_WORKERS" in proc.stderr and "routing file not found" in proc.stderr


@pytest.fixture
def own_stack(tmp_path):
    stack = TestStack("sim", tmp_path).start()
    yield stack
    stack.stop()


def _stop_backend(stack, name):
    proc = next(p for p in stack.backends if p.name == name)
    proc.popen.kill()
    proc.popen.wait()


def test_dead_replica_leaves_rotation_and_all_dead_is_fast_503(own_stack):
    body = {"model": "qwen", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}
    url = own_stack.base_url + "/v1/chat/completions"
    _stop_backend(own_stack, "chat0")
    time.sleep(1.5)  # one health interval in this stack
    auth = own_stack.auth
    assert all(httpx.post(url, json=body, headers=auth).status_code == 200 for _ in range(10))

    _stop_backend(own_stack, "chat1")
    time.sleep(1.5)
    started = time.monotonic()
    resp = httpx.post(url, json=body, headers=auth)
    assert resp.status_code == 503 and time.monotonic() - started < 0.5
    assert resp.headers["retry-after"].isdigit()
    assert resp.json()["error"]["code"] == "backend_unavailable"
    assert "127.0.0.1" not in resp.text
    health = httpx.get(own_stack.base_url + "/healthz").json()
    assert health["status"] == "degraded" and health["pools"]["chat"]["healthy"] == 0
