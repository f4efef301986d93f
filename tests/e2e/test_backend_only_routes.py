"""vLLM's development and control routes are never reachable through the gateway, whatever
the credentials: only the endpoint table's paths are forwarded."""

from __future__ import annotations

import httpx
import pytest

# vLLM 0.32's own routes that change or expose an engine (serve/dev, lora, profile, elastic_ep,
# fault_tolerance, sagemaker).
BACKEND_ONLY = ["/sleep", "/wake_up", "/is_sleeping", "/reset_prefix_cache", "/reset_mm_cache",
                "/reset_encoder_cache", "/collective_rpc", "/release_kv_cache_memory",
                "/v1/load_lora_adapter", "/v1/unload_lora_adapter", "/start_profile",
                "/stop_profile", "/scale_elastic_ep", "/is_scaling_elastic_ep", "/pause",
                "/resume", "/invocations", "/ping", "/server_info", "/v1/chat/completions/render",
                "/fault_tolerance/apply", "/adapters", "/adapters/tiny-sql-lora"]
# Run-time LoRA loading (VLLM_ALLOW_RUNTIME_LORA_UPDATING): vLLM's own routes and SageMaker's
# (POST /adapters, DELETE /adapters/{name}), with bodies that would load or drop an adapter.
LORA_LOADING = [("POST", "/v1/load_lora_adapter", {"lora_name": "x", "lora_path": "/tmp/x"}),
                ("POST", "/v1/unload_lora_adapter", {"lora_name": "tiny-sql-lora"}),
                ("POST", "/adapters", {"name": "x", "src": "/tmp/x"}),
                ("DELETE", "/adapters/tiny-sql-lora", None),
                ("DELETE", "/adapters/acme%2Fsql-assistant", None),
                ("PUT", "/v1/load_lora_adapter", {"lora_name": "x", "lora_path": "/tmp/x"})]


@pytest.mark.parametrize("path", BACKEND_ONLY)
@pytest.mark.parametrize("method", ["GET", "POST"])
def test_a_backend_only_route_is_a_gateway_404(sim_stack, path, method):
    for headers in (sim_stack.auth, {"Authorization": f"Bearer {sim_stack.admin_token}"}):
        resp = httpx.request(method, sim_stack.base_url + path, json={"model": "qwen"},
                             headers=headers, timeout=10)
        assert resp.status_code in (404, 405), (path, resp.status_code, resp.text)
        assert set(resp.json()["error"]) == {"message", "type", "param", "code"}


def _unrouted(stack) -> int:
    """Requests the chat simulators got on paths they do not serve (they count them)."""
    return sum(httpx.get(stack.backend_url(name) + "/sim/stats", timeout=10).json()
               ["by_endpoint"].get("other", 0) for name in ("chat0", "chat1"))


def test_no_backend_only_route_reached_a_backend(sim_stack):
    before = _unrouted(sim_stack)
    for path in BACKEND_ONLY:
        httpx.post(sim_stack.base_url + path, json={}, headers=sim_stack.auth, timeout=10)
    assert _unrouted(sim_stack) == before
    # the count is real: the same paths sent to a simulator directly are counted
    httpx.post(sim_stack.backend_url("chat0") + "/sleep", json={}, timeout=10)
    assert _unrouted(sim_stack) == before + 1


@pytest.mark.parametrize("method,path,body", LORA_LOADING)
def test_run_time_lora_loading_is_never_forwarded(sim_stack, method, path, body):
    """No credential loads or drops an adapter through the gateway: the routing table's
    adapters are all there is."""
    before = _unrouted(sim_stack)
    for headers in (sim_stack.auth, {"Authorization": f"Bearer {sim_stack.admin_token}"}):
        resp = httpx.request(method, sim_stack.base_url + path, json=body, headers=headers,
                             timeout=10)
        assert resp.status_code in (404, 405), (path, resp.status_code, resp.text)
        assert set(resp.json()["error"]) == {"message", "type", "param", "code"}
    assert _unrouted(sim_stack) == before
