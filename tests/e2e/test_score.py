"""/v1/score (and /score) and the rerank aliases (/rerank, /v2/rerank) through the gateway:
vLLM's answers, scopes, costs in tokens, bad input as OpenAI-style errors."""

from __future__ import annotations

import httpx
import pytest

DOCS = ["Paris is the capital of France.", "Berlin is in Germany.", "Bananas are yellow."]


def _post(stack, path: str, body: dict, key: str | None = None) -> httpx.Response:
    headers = {"Authorization": f"Bearer {key}"} if key else stack.auth
    return httpx.post(stack.base_url + path, json=body, headers=headers, timeout=60)


def _direct(stack, path: str, body: dict) -> httpx.Response:
    auth = {"Authorization": f"Bearer {stack.backend_key}"}
    url = stack.backend_url("rerank")
    served = httpx.get(url + "/v1/models", headers=auth, timeout=10).json()["data"][0]["id"]
    return httpx.post(url + path, json={**body, "model": served}, headers=auth, timeout=60)


def _without_ids(answer: dict) -> dict:
    return {k: v for k, v in answer.items() if k not in ("id", "created", "model")}


@pytest.mark.parametrize("path", ["/v1/score", "/score"])
@pytest.mark.parametrize("body", [{"queries": "capital of France", "documents": DOCS},
                                  {"text_1": ["a cat", "a dog"], "text_2": ["feline", "canine"]}])
def test_score_answers_as_the_backend_does(stack, path, body):
    resp = _post(stack, path, {"model": "bge-reranker-v2-m3", **body})
    assert resp.status_code == 200, resp.text
    answer = resp.json()
    assert answer["model"] == "BAAI/bge-reranker-v2-m3"  # the public name, not the served one
    assert _without_ids(answer) == _without_ids(_direct(stack, "/v1/score", body).json())
    assert [d["index"] for d in answer["data"]] == list(range(len(answer["data"])))


@pytest.mark.parametrize("path", ["/rerank", "/v2/rerank"])
def test_rerank_aliases_answer_as_v1_rerank(stack, path):
    body = {"model": "bge-reranker-v2-m3", "query": "capital of France", "documents": DOCS}
    v1 = _post(stack, "/v1/rerank", body)
    alias = _post(stack, path, body)
    assert alias.status_code == v1.status_code == 200, alias.text
    assert _without_ids(alias.json()) == _without_ids(v1.json())


@pytest.mark.parametrize("body,param", [
    ({"queries": "q"}, "body"),                                          # one side only
    ({"queries": "q", "documents": ["d"], "text_1": "a", "text_2": "b"}, "body"),  # two pairs
    ({"queries": "q", "documents": []}, "documents"),
    ({"queries": "", "documents": ["d"]}, "queries"),
    ({"queries": 5, "documents": ["d"]}, "queries"),
])
def test_bad_score_bodies_are_400(sim_stack, body, param):
    resp = _post(sim_stack, "/v1/score", {"model": "bge-reranker-v2-m3", **body})
    assert resp.status_code == 400, resp.text
    err = resp.json()["error"]
    assert err["type"] == "invalid_request_error" and err["param"] == param, err


def test_score_needs_the_rerank_scope_a_rerank_model_and_costs_tokens(sim_stack):
    chat_only = sim_stack.create_org(key={"scopes": ["chat"]})["api_key"]
    body = {"model": "bge-reranker-v2-m3", "queries": "q", "documents": DOCS}
    resp = _post(sim_stack, "/v1/score", body, key=chat_only)
    assert resp.status_code == 403 and resp.json()["error"]["code"] == "insufficient_scope"
    resp = _post(sim_stack, "/v1/score", {**body, "model": "qwen"})
    assert resp.status_code == 400 and resp.json()["error"]["param"] == "model", resp.text
    small = sim_stack.create_org(tpm_limit=50)["api_key"]  # the pairs' tokens exceed the whole TPM
    resp = _post(sim_stack, "/v1/score", {**body, "documents": DOCS * 4}, key=small)
    assert resp.status_code == 400 and resp.json()["error"]["param"] == "max_tokens", resp.text
