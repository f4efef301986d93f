"""The OpenAI-compatible inference endpoints, routed from the endpoint table (endpoints.py);
each hands its request to `serving.serve`.

Each route reads its body raw and validates it with the endpoint's schema, then sends the
client's own JSON on with only what the gateway must set rewritten (`model`, a missing
`max_tokens`, `stream_options`), so vLLM-specific parameters survive.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import Response

from ..deps import PrincipalDep, ServicesDep
from .direct_route import DirectRoute
from ..messages.protocol import AnthropicErrorResponse
from ..openapi import ANTHROPIC_KEY, INFERENCE_ERRORS, anthropic_errors, json_body
from ..endpoints import ENDPOINTS, EndpointSpec
from ..serving import serve

# Before OpenAPI 3.2, an event stream's `schema` describes one event, as {data, event, id, retry}.
STREAM_DOC = {"text/event-stream": {"schema": {
    "type": "object", "required": ["data"], "properties": {"data": {"type": "string"}},
    "description": "With `stream: true`: `data: {chunk}` events, then `data: [DONE]`. A backend "
                   "failure mid-stream arrives as a `data: {\"error\": {...}}` event and ends the stream."}}}


# Anthropic's events (the Messages API): named by an `event:` line, errors included.
ANTHROPIC_STREAM_DOC = {"text/event-stream": {"schema": {
    "type": "object", "required": ["event", "data"],
    "properties": {"event": {"type": "string"}, "data": {"type": "string"}},
    "description": "With `stream: true`: `message_start`, `content_block_start`, "
                   "`content_block_delta`, `content_block_stop`, `message_delta` (with the usage) "
                   "and `message_stop` events. A failure mid-stream arrives as an `error` event "
                   "and ends the stream."}}}


def _ok(endpoint: EndpointSpec) -> dict:
    anthropic = endpoint.dialect == "anthropic"
    doc: dict = {"model": endpoint.answer,
                 "description": "The backend's answer, with the public model name."}
    if endpoint.events is not None:
        doc["content"] = ANTHROPIC_STREAM_DOC if anthropic else STREAM_DOC
    return {200: doc, **(anthropic_errors(AnthropicErrorResponse) if anthropic else INFERENCE_ERRORS)}


def _extra(endpoint: EndpointSpec) -> dict:
    """The body's schema, and the credentials where they differ from the tag's."""
    extra = json_body(endpoint.request)
    if endpoint.dialect == "anthropic":
        extra["security"] = ANTHROPIC_KEY
    return extra


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
                responses=_ok(endpoint), openapi_extra=_extra(endpoint))
    return routes

