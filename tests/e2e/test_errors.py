"""Every bad input gets an OpenAI-shaped error with the right status, through real gunicorn."""

from __future__ import annotations

import httpx
import pytest

MSG = [{"role": "user", "content": "hi"}]


@pytest.fixture
def http(sim_stack):
    with httpx.Client(base_url=sim_stack.base_url, timeout=30, headers=sim_stack.auth) as client:
        yield client


def _error(resp: httpx.Response, status: int) -> dict:
    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"].startswith("application/json")
    err = resp.json()["error"]
    assert set(err) == {"message", "type", "param", "code"}
    assert isinstance(err["message"], str) and err["message"]
    return err


def test_body_over_limit_is_413(http):
    big = b'{"model":"qwen","messages":[{"role":"user","content":"' + b"x" * 1_100_000 + b'"}]}'
    err = _error(http.post("/v1/chat/completions", content=big,
                           headers={"content-type": "application/json"}), 413)
    assert err["code"] == "request_too_large"


def test_chunked_body_over_limit_is_413(http):
    def chunks():
        yield b'{"model":"qwen","messages":[{"role":"user","content":"'
        for _ in range(40):
            yield b"y" * 32768
        yield b'"}]}'
    _error(http.post("/v1/chat/completions", content=chunks(),
                     headers={"content-type": "application/json"}), 413)


@pytest.mark.parametrize("raw", [b"{not json", b"", b"[1, 2]", b'"text"'])
def test_not_a_json_object_is_400(http, raw):
    _error(http.post("/v1/chat/completions", content=raw,
                     headers={"content-type": "application/json"}), 400)


def test_invalid_utf8_is_400(http):
    raw = b'{"model":"qwen","messages":[{"role":"user","content":"\xff\xfe"}]}'
    err = _error(http.post("/v1/chat/completions", content=raw,
                           headers={"content-type": "application/json"}), 400)
    assert "UTF-8" in err["message"]


def test_wrong_content_type_is_415(http):
    _error(http.post("/v1/chat/completions", content=b"model=qwen",
                     headers={"content-type": "application/x-www-form-urlencoded"}), 415)


@pytest.mark.parametrize("body,param", [
    ({"model": "qwen"}, "messages"),
    ({"model": "qwen", "messages": []}, "messages"),
    ({"model": "qwen", "messages": MSG, "max_tokens": 0}, "max_tokens"),
    ({"model": "qwen", "messages": MSG, "max_tokens": "lots"}, "max_tokens"),
    ({"model": "qwen", "messages": MSG, "n": 500}, "n"),
    ({"model": "qwen", "messages": [{"role": "robot", "content": "x"}]}, "messages[0].role"),
    ({"messages": MSG}, "model"),
])
def test_schema_violations_are_400_naming_the_param(http, body, param):
    err = _error(http.post("/v1/chat/completions", json=body), 400)
    assert err["param"] == param and err["type"] == "invalid_request_error"


def test_unknown_model_is_404_listing_models(http):
    err = _error(http.post("/v1/chat/completions", json={"model": "gpt-9", "messages": MSG}), 404)
    assert err["code"] == "model_not_found" and "Qwen/Qwen2.5-7B-Instruct" in err["message"]


@pytest.mark.parametrize("path,body", [
    ("/v1/embeddings", {"model": "qwen", "input": "x"}),
    ("/v1/chat/completions", {"model": "snowflake-arctic-embed", "messages": MSG}),
    ("/v1/text2sql", {"model": "qwen", "messages": MSG}),
    ("/v1/rerank", {"model": "snowflake-arctic-embed", "query": "q", "documents": ["d"]}),
])
def test_model_on_wrong_endpoint_is_400(http, path, body):
    assert _error(http.post(path, json=body), 400)["code"] == "model_not_supported"


def test_unknown_route_and_method_are_openai_shaped(http):
    assert _error(http.get("/v1/nothing-here"), 404)["code"] == "not_found"
    assert _error(http.get("/v1/chat/completions"), 405)["code"] == "method_not_allowed"


def test_request_id_is_echoed_and_generated(http):
    resp = http.post("/v1/chat/completions", json={"model": "qwen", "messages": MSG, "max_tokens": 1},
                     headers={"x-request-id": "trace-abc.123"})
    assert resp.status_code == 200 and resp.headers["x-request-id"] == "trace-abc.123"
    generated = http.post("/v1/chat/completions", json={"model": "nope", "messages": MSG})
    assert len(generated.headers["x-request-id"]) == 32
    hostile = http.get("/livez", headers={"x-request-id": "a" * 500})
    assert hostile.headers["x-request-id"] != "a" * 500


@pytest.mark.parametrize("which", ["api_key", "admin_token", "backend_key"])
def test_a_secret_sent_as_request_id_never_reaches_the_backend(http, sim_stack, which):
    """vLLM logs the X-Request-ID it gets, unmasked: an API key (by its shape) or one of the
    deployment's own secrets sent as one is replaced. The simulator names its answer after
    the X-Request-ID it received (chatcmpl-<id>)."""
    secret = getattr(sim_stack, which)
    chat = {"model": "qwen", "messages": MSG, "max_tokens": 1}
    kept = http.post("/v1/chat/completions", json=chat, headers={"x-request-id": "task-42"})
    assert kept.json()["id"] == "chatcmpl-task-42"  # the simulator does show what it received
    resp = http.post("/v1/chat/completions", json=chat, headers={"x-request-id": secret})
    assert resp.status_code == 200, resp.text
    made = resp.headers["x-request-id"]
    assert len(made) == 32 and resp.json()["id"] == f"chatcmpl-{made}"
    assert secret not in resp.text


def test_errors_never_leak_backend_addresses_or_keys(http, sim_stack):
    bodies = [http.post("/v1/chat/completions", json={"model": "qwen", "messages": MSG, "max_tokens": 0}).text,
              http.post("/v1/chat/completions", json={"model": "gpt-9", "messages": MSG}).text]
    for text in bodies:
        assert "127.0.0.1" not in text and sim_stack.backend_key not in text
