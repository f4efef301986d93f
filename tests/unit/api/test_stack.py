"""The one request stack in-process (ASGI): inference POSTs go to their endpoint, everything
else to FastAPI, both inside one middleware chain; errors, request ids and access lines are
the same on both paths, and gzip only where it belongs."""

from __future__ import annotations

import asyncio

import httpx
import orjson
import pytest
from starlette.requests import Request
from starlette.responses import Response

from llmgw import error_handlers
from llmgw.api.stack import GatewayApp
from llmgw.errors import RateLimited

BIG = orjson.dumps({"data": [{"embedding": [0.123456] * 400}]})  # ~4 KB of JSON


async def _lane(request: Request) -> Response:
    """What the lane serves, chosen by the body, so each test asks for one behaviour."""
    what = (await request.json())["what"]
    if what == "limited":
        raise RateLimited("limit_rpm", 7, {"x-ratelimit-limit-requests": "10"})
    if what == "crash":
        raise RuntimeError("secret detail that must not leak")
    if what == "big-sse":
        return Response(b"data: " + BIG + b"\n\n", media_type="text/event-stream")
    return Response(BIG if what == "big" else b'{"lane": true}', media_type="application/json")


@pytest.fixture
def client():
    app = GatewayApp()
    error_handlers.install(app)

    @app.post("/v1/chat/completions")
    async def framework_route() -> dict:
        return {"lane": False}

    @app.get("/v1/models")
    async def models() -> dict:
        return {"data": []}

    @app.get("/admin/crash")
    async def framework_crash() -> dict:
        raise RuntimeError("secret detail that must not leak")

    app.serve_inference({"/v1/chat/completions": _lane}, gzip_min_bytes=1024, gzip_level=5)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)

    def call(method: str, path: str, what: str | None = None, **headers) -> httpx.Response:
        async def go():
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
                return await c.request(method, path, json={"what": what} if what else None,
                                       headers={"accept-encoding": "identity", **headers})
        return asyncio.run(go())
    return call


def test_inference_posts_go_to_their_endpoint_and_the_rest_to_the_framework(client):
    assert client("POST", "/v1/chat/completions", "ok").json() == {"lane": True}
    assert client("GET", "/v1/models").json() == {"data": []}
    wrong_method = client("GET", "/v1/chat/completions")
    assert wrong_method.status_code == 405
    assert wrong_method.json()["error"]["type"] == "invalid_request_error"
    assert wrong_method.headers["x-request-id"]


def test_a_gateway_error_is_answered_in_the_openai_shape_with_its_headers(client):
    resp = client("POST", "/v1/chat/completions", "limited", **{"x-request-id": "abc-123"})
    assert resp.status_code == 429
    assert resp.json()["error"]["code"] == "limit_rpm"
    assert set(resp.json()["error"]) == {"message", "type", "param", "code"}
    assert resp.headers["retry-after"] == "7" and resp.headers["x-ratelimit-limit-requests"] == "10"
    assert resp.headers["x-request-id"] == "abc-123"


@pytest.mark.parametrize("method,path,what", [("POST", "/v1/chat/completions", "crash"),
                                              ("GET", "/admin/crash", None)])
def test_an_unexpected_error_is_a_bare_500_without_detail(client, method, path, what):
    resp = client(method, path, what, **{"x-request-id": "crash-1"})
    assert resp.status_code == 500
    assert resp.json()["error"]["code"] == "internal_error"
    assert "secret" not in resp.text
    # Exactly one copy on the lane and on the framework path (where Starlette answers
    # outside the middleware that sets it).
    assert resp.headers.get_list("x-request-id") == ["crash-1"]


def test_large_json_is_gzipped_only_when_accepted_and_event_streams_never(client):
    packed = client("POST", "/v1/chat/completions", "big", **{"accept-encoding": "gzip"})
    assert packed.headers["content-encoding"] == "gzip"
    assert packed.json() == orjson.loads(BIG)  # httpx decoded it
    assert int(packed.headers["content-length"]) < len(BIG) // 4
    plain = client("POST", "/v1/chat/completions", "big")
    assert "content-encoding" not in plain.headers and plain.content == BIG
    small = client("POST", "/v1/chat/completions", "ok", **{"accept-encoding": "gzip"})
    assert "content-encoding" not in small.headers
    sse = client("POST", "/v1/chat/completions", "big-sse", **{"accept-encoding": "gzip"})
    assert "content-encoding" not in sse.headers and len(sse.content) > 1024

