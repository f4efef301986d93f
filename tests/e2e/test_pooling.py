"""/pooling, /v2/embed and /classify through the gateway: the backend's own answers (simulator
and real vLLM), the public model name, scopes, the model each needs, model access, costs in
tokens and metering, bad input as OpenAI-style errors."""

from __future__ import annotations

import time

import httpx
import pytest

EMBED, RERANK = "snowflake-arctic-embed", "bge-reranker-v2-m3"
TEXTS = ["Paris is the capital of France.", "The quick brown fox"]
# path -> (backend, public model alias, its public name, a body)
CALLS = {
    "/pooling": ("embed", EMBED, "Snowflake/snowflake-arctic-embed-l-v2.0", {"input": TEXTS}),
    "/v2/embed": ("embed", EMBED, None, {"texts": TEXTS, "embedding_types": ["float", "ubinary"]}),
    "/classify": ("rerank", RERANK, "BAAI/bge-reranker-v2-m3", {"input": TEXTS}),
}


def _post(stack, path: str, body: dict, key: str | None = None) -> httpx.Response:
    headers = {"Authorization": f"Bearer {key}"} if key else stack.auth
    return httpx.post(stack.base_url + path, json=body, headers=headers, timeout=60)


def _direct(stack, backend: str, path: str, body: dict) -> httpx.Response:
    auth = {"Authorization": f"Bearer {stack.backend_key}"}
    url = stack.backend_url(backend)
    served = httpx.get(url + "/v1/models", headers=auth, timeout=10).json()["data"][0]["id"]
    return httpx.post(url + path, json={**body, "model": served}, headers=auth, timeout=60)


def _without_ids(answer: dict) -> dict:
    return {k: v for k, v in answer.items() if k not in ("id", "created", "model")}


@pytest.mark.parametrize("path,extra", [("/pooling", {}), ("/pooling", {"encoding_format": "base64"}),
                                        ("/v2/embed", {}), ("/classify", {})])
def test_answers_as_the_backend_does(stack, path, extra):
    backend, alias, public, body = CALLS[path]
    resp = _post(stack, path, {"model": alias, **body, **extra})
    assert resp.status_code == 200, resp.text
    answer = resp.json()
    assert _without_ids(answer) == _without_ids(_direct(stack, backend, path, {**body, **extra}).json())
    assert answer.get("model") == public  # the public name; /v2/embed's answer names none
    assert "tiny-" not in resp.text  # no served name leaks


def test_pooling_gives_the_embeddings_vectors(stack):
    pooled = _post(stack, "/pooling", {"model": EMBED, "input": TEXTS}).json()
    embedded = _post(stack, "/v1/embeddings", {"model": EMBED, "input": TEXTS}).json()
    assert [d["data"] for d in pooled["data"]] == [d["embedding"] for d in embedded["data"]]
    assert pooled["usage"]["prompt_tokens"] == embedded["usage"]["prompt_tokens"] > 0


@pytest.mark.parametrize("path,body,param", [
    ("/pooling", {"model": EMBED}, "body"),                                   # no input
    ("/pooling", {"model": EMBED, "input": "a", "messages": [{"role": "user", "content": "a"}]}, "body"),
    ("/pooling", {"model": EMBED, "input": ""}, "input"),
    ("/pooling", {"model": EMBED, "input": 5}, "input"),
    ("/pooling", {"model": EMBED, "input": "a", "encoding_format": "bytes"}, "encoding_format"),
    ("/pooling", {"input": "a"}, "model"),
    ("/classify", {"model": RERANK, "input": []}, "input"),
    ("/classify", {"model": RERANK, "messages": [{"role": "nobody", "content": "a"}]}, "messages[0].role"),
    ("/v2/embed", {"model": EMBED}, "body"),
    ("/v2/embed", {"model": EMBED, "texts": ["a"], "images": ["b"]}, "body"),
    ("/v2/embed", {"model": EMBED, "texts": "a"}, "texts"),
    ("/v2/embed", {"model": EMBED, "texts": [1]}, "texts[0]"),
    ("/v2/embed", {"model": EMBED, "texts": ["a"], "embedding_types": ["int8"]}, "embedding_types[0]"),
    ("/v2/embed", {"model": EMBED, "texts": ["a"], "max_tokens": "2"}, "max_tokens"),
])
def test_bad_bodies_are_400_naming_the_field(sim_stack, path, body, param):
    resp = _post(sim_stack, path, body)
    assert resp.status_code == 400, resp.text
    err = resp.json()["error"]
    assert err["type"] == "invalid_request_error" and err["param"] == param, err


@pytest.mark.parametrize("path,body", [("/pooling", {"model": EMBED, "input": "hello " * 5000}),
                                       ("/classify", {"model": RERANK, "input": ["hello " * 5000]}),
                                       ("/pooling", {"model": EMBED, "input": "a", "task": "classify"})])
def test_what_the_backend_refuses_is_a_400(stack, path, body):
    # over the model's context (4096 simulated, 512 real) but not the key's; a task it does not run
    resp = _post(stack, path, body, key=stack.open_org(max_context_tokens=10**6)["api_key"])
    err = resp.json()["error"]  # the backend's own 400, relayed with a string code
    assert resp.status_code == 400 and err["code"] == "invalid_request", resp.text
    if "task" in body:
        assert err["param"] == "task", err
    else:  # real vLLM refuses a text this long by its characters (param input_text) unread
        assert "maximum context length" in err["message"], err


@pytest.mark.parametrize("path", list(CALLS))
def test_scope_model_kind_access_and_cost(sim_stack, path):
    _, alias, _, body = CALLS[path]
    body = {"model": alias, **body}
    scope = "rerank" if path == "/classify" else "embeddings"
    others = sim_stack.create_org(key={"scopes": [s for s in ("chat", "embeddings", "rerank") if s != scope]})
    resp = _post(sim_stack, path, body, key=others["api_key"])
    assert resp.status_code == 403 and resp.json()["error"]["code"] == "insufficient_scope"
    wrong = {"/pooling": RERANK, "/v2/embed": RERANK, "/classify": EMBED}[path]
    for model in (wrong, "qwen"):  # a model that does not serve this endpoint
        resp = _post(sim_stack, path, {**body, "model": model})
        assert resp.status_code == 400 and resp.json()["error"]["param"] == "model", resp.text
    resp = _post(sim_stack, path, {**body, "model": "no-such-model"})
    assert resp.status_code == 404 and resp.json()["error"]["code"] == "model_not_found"
    only_chat = sim_stack.create_org(models=["qwen"])["api_key"]
    resp = _post(sim_stack, path, body, key=only_chat)
    assert resp.status_code == 403 and resp.json()["error"]["code"] == "model_not_allowed"
    small = sim_stack.create_org(tpm_limit=50)["api_key"]  # the input's tokens exceed the whole TPM
    huge = {**body, "texts" if path == "/v2/embed" else "input": ["word " * 40] * 4}
    resp = _post(sim_stack, path, huge, key=small)
    assert resp.status_code == 400 and resp.json()["error"]["param"] == "max_tokens", resp.text


def test_each_call_is_metered_as_the_backend_reports(sim_stack):
    org = sim_stack.create_org()
    reported = {}
    for path, (_, alias, _, body) in CALLS.items():
        answer = _post(sim_stack, path, {"model": alias, **body},
                       key=org["api_key"]).json()
        usage = answer.get("usage") or {"prompt_tokens": answer["meta"]["billed_units"]["input_tokens"]}
        reported[{"/pooling": "pooling", "/v2/embed": "cohere_embed", "/classify": "classify"}[path]] = \
            usage["prompt_tokens"]
    deadline, seen = time.monotonic() + 10, {}
    while time.monotonic() < deadline:
        with sim_stack.admin() as admin:
            rows = admin.get("/admin/usage", params={"window": "1h", "limit": 500}).json()["orgs"]
        mine = next((r for r in rows if r["org_id"] == org["org"]["id"]), {})
        seen = {name: mine.get("by_endpoint", {}).get(name, {}).get("prompt_tokens") for name in reported}
        if seen == reported:
            break
        time.sleep(0.2)
    assert seen == reported and all(reported.values())
