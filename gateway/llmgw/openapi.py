"""OpenAPI: the document of what the API accepts and answers, exactly, for /openapi.json and /docs.

Routes read their bodies raw (for speed), so their request schemas are declared here; the
document is then brought in line with what the gateway enforces: `model` lists the names each
endpoint serves, errors are 400 (never FastAPI's 422), and each operation names its credentials.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel

from .protocol import ErrorResponse
from .routing import Endpoint, RoutingTable

if TYPE_CHECKING:
    from .endpoints import EndpointSpec

_REF = "#/components/schemas/{model}"

SECURITY_SCHEMES = {
    "apiKey": {"type": "http", "scheme": "bearer",
               "description": "An organisation's API key (sk-...)."},
    "adminToken": {"type": "http", "scheme": "bearer", "description": "ADMIN_TOKEN."},
    "adminTokenHeader": {"type": "apiKey", "in": "header", "name": "X-Admin-Token",
                         "description": "ADMIN_TOKEN, in seed 000's header."},
    "anthropicApiKey": {"type": "apiKey", "in": "header", "name": "x-api-key",
                        "description": "An organisation's API key, as Anthropic's SDKs send it "
                                       "(the routes speaking Anthropic's protocol only)."},
}
API_KEY = [{"apiKey": []}]
ANTHROPIC_KEY = [{"apiKey": []}, {"anthropicApiKey": []}]
ADMIN = [{"adminToken": []}, {"adminTokenHeader": []}]
MONITOR = ADMIN + API_KEY  # the admin token, or a key with the monitor scope
_SECURITY_BY_TAG = {"inference": API_KEY, "models": API_KEY, "files": API_KEY, "batches": API_KEY, "admin": ADMIN,
                    "monitoring": MONITOR}


def json_body(model: type[BaseModel], *, required: bool = True) -> dict:
    """`openapi_extra` for a route whose JSON body follows `model`."""
    return {"requestBody": {"required": required, "content": {
        "application/json": {"schema": {"$ref": _REF.format(model=model.__name__)}}}}}


def error_responses(*statuses: int) -> dict:
    return {status: {"model": ErrorResponse, "description": description}
            for status, description in _ERRORS.items() if status in statuses}


_ERRORS = {
    400: "Invalid request: bad JSON, a schema violation (names the param), a model used on the "
         "wrong endpoint, or a request over the key's own bounds (`bad_input`).",
    401: "Missing, malformed, unknown, expired or revoked key (`invalid_api_key`), or a wrong "
         "admin token (`unauthorized`).",
    403: "The key lacks the route's scope (`insufficient_scope`) or its organisation is suspended.",
    404: "Not found: the model (`model_not_found`), or an admin route's id.",
    409: "Conflict: an organisation with this name exists.",
    413: "The body is larger than MAX_BODY_BYTES.",
    415: "The body is not application/json.",
    429: "A rate limit or quota is reached (`limit_*`, `quota_*`); see Retry-After.",
    502: "A backend failed or broke the connection.",
    503: "Unavailable now: no backend can serve, Redis is not answering, or the admin API is "
         "disabled; see Retry-After.",
    504: "A backend did not answer in time.",
}
# A backend's own 413 is relayed (backend_errors.py), so an inference route says so; its 422
# is answered as a 400.
INFERENCE_ERRORS = {**error_responses(400, 401, 403, 404, 413, 415, 429, 502, 503, 504),
                    413: {"model": ErrorResponse, "description": "The body is larger than "
                          "MAX_BODY_BYTES, or the backend refused the request as too large "
                          "(its message relayed)."}}


def anthropic_errors(model: type[BaseModel]) -> dict:
    """INFERENCE_ERRORS with Anthropic's error body (`model`) for the routes that answer so."""
    return {status: {**doc, "model": model} for status, doc in INFERENCE_ERRORS.items()}


def model_required(routing: RoutingTable, endpoints: Iterable[EndpointSpec]) -> dict[str, bool]:
    """Per request schema: is `model` required (everywhere but text2sql with a default model)?"""
    return {e.request.__name__: not (e.serves is Endpoint.TEXT2SQL and routing.text2sql_default)
            for e in endpoints}


def install(app: FastAPI, request_models: list[type[BaseModel]], required: dict[str, bool]) -> None:
    """Generate the document once. `required` says, per inference request schema, whether
    `model` is required there."""

    def openapi() -> dict:
        if app.openapi_schema is None:
            schema = get_openapi(title=app.title, version=app.version,
                                 description=app.description, routes=app.routes)
            components = schema.setdefault("components", {})
            _add_request_models(components.setdefault("schemas", {}), request_models, required)
            components["securitySchemes"] = SECURITY_SCHEMES
            _conform_operations(schema)
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi


def _add_request_models(schemas: dict, models: list[type[BaseModel]],
                        required: dict[str, bool]) -> None:
    for model in models:
        model_schema = model.model_json_schema(ref_template=_REF)
        schemas.update(model_schema.pop("$defs", {}))
        if model.__name__ in required:
            # No list of names: the document is public, and which models exist (and which a
            # key may use) is for GET /v1/models to say, to a caller with a key.
            model_schema["properties"]["model"] = {
                "type": "string", "minLength": 1,
                "description": "Public model name or alias, as GET /v1/models lists them for "
                               "the key; an unknown one is 404, one the key may not use 403."}
            if required[model.__name__]:
                model_schema["required"] = sorted({*model_schema.get("required", ()), "model"})
        schemas[model.__name__] = model_schema


def _conform_operations(schema: dict) -> None:
    """422 out (the error handler answers every validation error with 400), credentials in."""
    for methods in schema.get("paths", {}).values():
        for op in methods.values():
            op["responses"].pop("422", None)
            tags = op.get("tags") or [""]
            if "security" not in op and tags[0] in _SECURITY_BY_TAG:
                op["security"] = _SECURITY_BY_TAG[tags[0]]
    for unused in ("HTTPValidationError", "ValidationError"):
        schema["components"]["schemas"].pop(unused, None)
