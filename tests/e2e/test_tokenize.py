"""/tokenize and /detokenize through the gateway: vLLM's answer as the backend gives it, its own scope, bad
input as OpenAI-style errors, and a request's cost without tokens."""

from __future__ import annotations

import httpx
import pytest

MSG = [{"role": "user", "content": "hi there"}]


def _post(stack, path: str, body: dict, key: str | None = None) -> httpx.Response:
    headers = {"Authorization": f"Bearer {key}"} if key else stack.auth
    return httpx.post(stack.base_url + path, json=body, headers=headers, timeout=60)


def _direct(stack, path: str, body: dict, backend: str = "chat0") -> httpx.Response:
    """The same call straight to a chat backend, under its own served name."""
    auth = {"Authorization": f"Bearer {stack.backend_key}"}
    url = stack.backend_url(backend)
    served = httpx.get(url + "/v1/models", headers=auth, timeout=10).json()["data"][0]["id"]
    return httpx.post(url + path, json={**body, "model": served}, headers=auth, timeout=60)


@pytest.mark.parametrize("body", [{"prompt": "Hello world, hello tokens"},
                                  {"messages": MSG, "add_generation_prompt": True},
                                  {"prompt": "Hello", "return_token_strs": True}])
def test_tokenize_answers_as_the_backend_does(stack, body):
    resp = _post(stack, "/tokenize", {"model": "qwen", **body})
    assert resp.status_code == 200, resp.text
    direct = _direct(stack, "/tokenize", body).json()
    assert resp.json() == direct  # field by field, and no `model` added
    assert resp.json()["count"] == len(resp.json()["tokens"]) > 0


@pytest.mark.parametrize("body,param", [
    ({"model": "qwen"}, "body"),                                        # neither input
    ({"model": "qwen", "prompt": "a", "messages": MSG}, "body"),        # both
    ({"model": "qwen", "prompt": 5}, "prompt"),
    ({"model": "qwen", "prompt": ""}, "prompt"),
    ({"model": "qwen", "messages": []}, "messages"),
    ({"model": "qwen", "messages": [{"role": "nobody", "content": "x"}]}, "messages[0].role"),
    ({"prompt": "a"}, "model"),
])
def test_bad_tokenize_bodies_are_400_naming_the_field(sim_stack, body, param):
    resp = _post(sim_stack, "/tokenize", body)
    assert resp.status_code == 400, resp.text
    err = resp.json()["error"]
    assert err["type"] == "invalid_request_error" and err["param"] == param, err


def test_unknown_model_is_404_and_a_key_without_chat_scope_is_403(sim_stack):
    resp = _post(sim_stack, "/tokenize", {"model": "nope", "prompt": "a"})
    assert resp.status_code == 404 and resp.json()["error"]["code"] == "model_not_found"
    embed_only = sim_stack.create_org(key={"scopes": ["embeddings"]})["api_key"]
    resp = _post(sim_stack, "/tokenize", {"model": "qwen", "prompt": "a"}, key=embed_only)
    assert resp.status_code == 403 and resp.json()["error"]["code"] == "insufficient_scope"


def test_a_tokenize_call_costs_a_request_and_no_tokens(sim_stack):
    org = sim_stack.create_org(rpm_limit=2, tpm_limit=1)  # one token a minute: tokens would 429
    key = org["api_key"]
    for _ in range(2):
        resp = _post(sim_stack, "/tokenize", {"model": "qwen", "prompt": "a long " * 50}, key=key)
        assert resp.status_code == 200, resp.text
    resp = _post(sim_stack, "/tokenize", {"model": "qwen", "prompt": "a"}, key=key)
    assert resp.status_code == 429 and resp.json()["error"]["code"] == "limit_rpm"


def test_tokenize_is_not_cached_and_ignores_a_stream_flag(sim_stack):
    resp = _post(sim_stack, "/tokenize", {"model": "qwen", "prompt": "abc", "stream": True})
    assert resp.status_code == 200 and resp.headers["content-type"].startswith("application/json")
    assert resp.json()["count"] > 0


def test_detokenize_answers_as_the_backend_does_and_round_trips(stack):
    tokens = _post(stack, "/tokenize", {"model": "qwen", "prompt": "round trip"}).json()["tokens"]
    for backend in ("chat0", "chat1"):  # the simulator spells back only ids it has made itself
        assert _direct(stack, "/tokenize", {"prompt": "round trip"}, backend).json()["tokens"] == tokens
    resp = _post(stack, "/detokenize", {"model": "qwen", "tokens": tokens})
    assert resp.status_code == 200, resp.text
    assert resp.json() == _direct(stack, "/detokenize", {"tokens": tokens}).json()
    assert "round trip" in resp.json()["prompt"]


@pytest.mark.parametrize("body,param", [({"model": "qwen"}, "tokens"),
                                        ({"model": "qwen", "tokens": []}, "tokens"),
                                        ({"model": "qwen", "tokens": [1, -2]}, "tokens[1]"),
                                        ({"model": "qwen", "tokens": ["a"]}, "tokens[0]"),
                                        ({"model": "qwen", "tokens": "12"}, "tokens")])
def test_bad_detokenize_bodies_are_400_naming_the_field(sim_stack, body, param):
    resp = _post(sim_stack, "/detokenize", body)
    assert resp.status_code == 400, resp.text
    assert resp.json()["error"]["param"] == param
