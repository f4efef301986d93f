"""Hostile JSON and the request id on every error, through real gunicorn with no nginx in front."""

from __future__ import annotations

import httpx
import pytest

MSG = [{"role": "user", "content": "hi"}]
JSON = {"content-type": "application/json"}
CHAT_WITH_X = b'{"model":"qwen","max_tokens":1,"messages":[{"role":"user","content":"hi"}],"x":'


def _nested(depth: int, kind: str = "arrays") -> bytes:
    """A chat body (level 1) whose extra field (forwarded to the backend untouched) nests
    arrays or objects down to level `depth`. temperature 0: the cache keys it too."""
    levels = depth - 1
    inner = (b"[" * levels + b"]" * levels if kind == "arrays"
             else b'{"a":' * levels + b"0" + b"}" * levels)
    return (b'{"model":"qwen","max_tokens":1,"temperature":0,'
            b'"messages":[{"role":"user","content":"hi"}],"x":' + inner + b"}")


@pytest.fixture
def http(sim_stack):
    with httpx.Client(base_url=sim_stack.base_url, timeout=30, headers=sim_stack.auth) as client:
        yield client


def _one_request_id(resp: httpx.Response) -> str:
    ids = resp.headers.get_list("x-request-id")
    assert len(ids) == 1, f"{resp.status_code}: x-request-id {ids}"
    return ids[0]


# 253: the deepest body the gateway can serialise again (orjson's serialiser stops at 254
# levels and the cache key adds one); 1000 parses (orjson's parser takes 1024), 5000 does not.
@pytest.mark.parametrize("depth", [254, 300, 1000, 5000])
def test_deeply_nested_json_is_a_400_in_the_openai_shape(http, depth):
    resp = http.post("/v1/chat/completions", content=_nested(depth), headers=JSON)
    assert resp.status_code == 400, resp.text
    err = resp.json()["error"]
    assert set(err) == {"message", "type", "param", "code"}
    assert err["type"] == "invalid_request_error" and "nest" in err["message"]
    _one_request_id(resp)


def test_deeply_nested_objects_are_a_400_too(http):
    resp = http.post("/v1/chat/completions", content=_nested(254, "objects"), headers=JSON)
    assert resp.status_code == 400, resp.text
    assert resp.json()["error"]["type"] == "invalid_request_error"


@pytest.mark.parametrize("kind", ["arrays", "objects"])
def test_nesting_up_to_the_limit_is_forwarded(http, kind):
    resp = http.post("/v1/chat/completions", content=_nested(253, kind), headers=JSON)
    assert resp.status_code == 200, resp.text
    assert resp.json()["choices"][0]["message"]["role"] == "assistant"


def test_admin_bodies_are_bounded_too(sim_stack):
    with sim_stack.admin() as admin:
        resp = admin.post("/admin/orgs", headers=JSON,
                          content=b'{"name":"deep","x":' + b"[" * 999 + b"]" * 999 + b"}")
    assert resp.status_code == 400 and resp.json()["error"]["type"] == "invalid_request_error"
    _one_request_id(resp)


def test_every_error_answer_carries_one_request_id(http, sim_stack):
    chat = {"model": "qwen", "messages": MSG, "max_tokens": 1}
    answers = {
        "400 lane": http.post("/v1/chat/completions", content=b"{nope", headers=JSON),
        "401 lane": httpx.post(sim_stack.base_url + "/v1/chat/completions", json=chat),
        "404 model": http.post("/v1/chat/completions", json={**chat, "model": "gpt-9"}),
        "404 route": http.get("/v1/nothing-here"),
        "405": http.get("/v1/chat/completions"),
        "413": http.post("/v1/chat/completions", content=b"x" * 1_100_000, headers=JSON),
        "415": http.post("/v1/chat/completions", content=b"a=b",
                         headers={"content-type": "text/plain"}),
        "401 admin": httpx.get(sim_stack.base_url + "/admin/orgs"),
        "with a client id": http.post("/v1/chat/completions", content=b"[]",
                                      headers={**JSON, "x-request-id": "mine-1"}),
    }
    for what, resp in answers.items():
        assert resp.status_code >= 400, what
        _one_request_id(resp)
    assert answers["with a client id"].headers["x-request-id"] == "mine-1"


def test_a_backend_failure_carries_one_request_id(http, sim_stack):
    """A 5xx the gateway answers for a backend: one text2sql failure. Its pool has one backend,
    so the 500 is not retried and counts once against one worker's breaker (5 in a row open
    it): the session's later tests still find text2sql in rotation, as the end checks."""
    faults = sim_stack.backend_url("text2sql") + "/sim/faults"
    httpx.post(faults, json={"error_rate": 1.0, "error_status": 500}).raise_for_status()
    try:
        resp = http.post("/v1/text2sql", json={"messages": MSG, "max_tokens": 1})
    finally:
        httpx.post(faults, json={"reset": True}).raise_for_status()
    assert resp.status_code >= 500, resp.text
    assert resp.json()["error"]["type"] == "server_error"
    _one_request_id(resp)
    after = [http.post("/v1/text2sql", json={"messages": MSG, "max_tokens": 1}).status_code
             for _ in range(8)]  # 4 workers: most, if not all, of them
    assert after == [200] * 8


@pytest.mark.parametrize("extra", [
    b"18446744073709551615", b"-9223372036854775809", b"123456789012345678901234567890",
    b"1e308", b"-0.0", b'"\\u0000\\ud83d\\ude00"', b'{"": {"": []}}', b'"a", "x": "again"',
])
def test_odd_but_valid_json_is_forwarded(http, extra):
    """Valid JSON, however odd (huge numbers, NUL, duplicate keys), is the backend's to judge."""
    body = CHAT_WITH_X + extra + b"}"
    resp = http.post("/v1/chat/completions", content=body, headers=JSON)
    assert resp.status_code == 200, resp.text
    assert resp.json()["choices"][0]["message"]["role"] == "assistant"


@pytest.mark.parametrize("extra", [b"1e400", b'"\\ud800"', b"NaN"])
def test_json_that_cannot_be_represented_is_a_400(http, extra):
    body = CHAT_WITH_X + extra + b"}"
    resp = http.post("/v1/chat/completions", content=body, headers=JSON)
    assert resp.status_code == 400 and resp.json()["error"]["type"] == "invalid_request_error"
