"""The OpenAI-compatible inference endpoints; each hands its request to `serving.serve`.

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
from ..protocol import (ChatCompletionRequest, ChatCompletionResponse, CompletionRequest,
                        CompletionResponse, EmbeddingRequest, EmbeddingResponse, RerankRequest,
                        RerankResponse, Text2SQLRequest)
from ..routing import Endpoint
from ..serving import serve

router = APIRouter(tags=["inference"], route_class=DirectRoute)

REQUEST_MODELS = {ChatCompletionRequest: Endpoint.CHAT, CompletionRequest: Endpoint.COMPLETIONS,
                  Text2SQLRequest: Endpoint.TEXT2SQL, EmbeddingRequest: Endpoint.EMBEDDINGS,
                  RerankRequest: Endpoint.RERANK}
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


@router.post("/v1/chat/completions", summary="Chat completion (streaming or not)",
             responses=_ok(ChatCompletionResponse, streams=True),
             openapi_extra=json_body(ChatCompletionRequest))
async def chat_completions(request: Request, services: ServicesDep, principal: PrincipalDep) -> Response:
    return await serve(request, services, principal, ChatCompletionRequest, Endpoint.CHAT,
                        "/v1/chat/completions")


@router.post("/v1/completions", summary="Text completion (streaming or not)",
             responses=_ok(CompletionResponse, streams=True),
             openapi_extra=json_body(CompletionRequest))
async def completions(request: Request, services: ServicesDep, principal: PrincipalDep) -> Response:
    return await serve(request, services, principal, CompletionRequest, Endpoint.COMPLETIONS,
                        "/v1/completions")


@router.post("/v1/text2sql", summary="Text to SQL: a chat completion on the text2sql model",
             description="Same body and answer as /v1/chat/completions; `model` may be omitted.",
             responses=_ok(ChatCompletionResponse, streams=True),
             openapi_extra=json_body(Text2SQLRequest))
async def text2sql(request: Request, services: ServicesDep, principal: PrincipalDep) -> Response:
    return await serve(request, services, principal, Text2SQLRequest, Endpoint.TEXT2SQL,
                        "/v1/chat/completions")


@router.post("/v1/embeddings", summary="Embeddings", responses=_ok(EmbeddingResponse),
             openapi_extra=json_body(EmbeddingRequest))
async def embeddings(request: Request, services: ServicesDep, principal: PrincipalDep) -> Response:
    return await serve(request, services, principal, EmbeddingRequest, Endpoint.EMBEDDINGS,
                        "/v1/embeddings")


@router.post("/v1/rerank", summary="Rerank documents against a query",
             responses=_ok(RerankResponse), openapi_extra=json_body(RerankRequest))
async def rerank(request: Request, services: ServicesDep, principal: PrincipalDep) -> Response:
    return await serve(request, services, principal, RerankRequest, Endpoint.RERANK, "/v1/rerank")
