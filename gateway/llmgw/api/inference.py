"""The OpenAI-compatible inference endpoints, routed from the endpoint table (endpoints.py);
each hands its request to `serving.serve`.

Each route reads its body raw and validates it with the endpoint's schema, then sends the
client's own JSON on with only what the gateway must set rewritten (`model`, a missing
`max_tokens`, `stream_options`), so vLLM-specific parameters survive.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from pydantic import BaseModel
from starlette.responses import Response

from ..deps import PrincipalDep, ServicesDep
from .direct_route import DirectRoute
from ..openapi import INFERENCE_ERRORS, json_body
from ..endpoints import ENDPOINTS, EndpointSpec
from ..serving import serve

# Before OpenAPI 3.2, an event stream's `schema` describes one event, as {data, event, id, retry}.
STREAM_DOC = {"text/event-stream": {"schema": {
    "type": "object", "required": ["data"], "properties": {"data": {"type": "string"}},
    "description": "With `stream: true`: `data: {chunk}` events, then `data: [DONE]`. A backend "
                   "failure mid-stream arrives as a `data: {\"error\": {...}}` event and ends the stream."}}}


def _ok(model: type[BaseModel], streams: bool = False) -> dict:
    doc: dict = {"model": model, "description": "The backend's answer, with the public model name."}
    if streams:
        doc["content"] = STREAM_DOC
    return {200: doc, **INFERENCE_ERRORS}


def _handler(endpoint: EndpointSpec, path: str):
    async def handle(request: Request, services: ServicesDep, principal: PrincipalDep) -> Response:
        return await serve(request, services, principal, endpoint)
    # FastAPI names the operation after the function: /v1/chat/completions -> chat_completions
    handle.__name__ = path.removeprefix("/v1/").strip("/").replace("/", "_")
    return handle


def routes() -> APIRouter:
    """A POST route per path of every endpoint; aliases are left out of the OpenAPI document."""
    routes = APIRouter(tags=["inference"], route_class=DirectRoute)
    for endpoint in ENDPOINTS:
        for i, path in enumerate(endpoint.paths):
            routes.add_api_route(
                path, _handler(endpoint, path), methods=["POST"], summary=endpoint.summary,
                description=endpoint.description or None, include_in_schema=i == 0,
                responses=_ok(endpoint.answer, streams=endpoint.events is not None),
                openapi_extra=json_body(endpoint.request))
    return routes

