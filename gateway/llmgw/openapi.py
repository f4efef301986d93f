"""OpenAPI: declaring request bodies that routes read raw (for speed) so /docs still shows them."""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel

from .protocol import ErrorResponse

_REF = "#/components/schemas/{model}"


def json_body(model: type[BaseModel]) -> dict:
    """`openapi_extra` for a route whose JSON body follows `model`."""
    return {"requestBody": {"required": True, "content": {
        "application/json": {"schema": {"$ref": _REF.format(model=model.__name__)}}}}}


def error_responses(*statuses: int) -> dict:
    return {status: {"model": ErrorResponse, "description": description}
            for status, description in _ERRORS.items() if status in statuses}


_ERRORS = {
    401: "Missing, malformed, unknown, expired or revoked key (`invalid_api_key`), or a wrong admin token (`unauthorized`).",
    403: "The key lacks the route's scope (`insufficient_scope`) or its organisation is suspended.",
    409: "Conflict: an organisation with this name exists.",
    400: "Invalid request: bad JSON, a schema violation (names the param), or a model used on the wrong endpoint.",
    404: "The model does not exist (`model_not_found`).",
    413: "The body is larger than MAX_BODY_BYTES.",
    415: "The body is not application/json.",
    502: "A backend failed or broke the connection.",
    503: "No backend can serve the request now; see Retry-After.",
    504: "A backend did not answer in time.",
}
INFERENCE_ERRORS = error_responses(400, 401, 403, 404, 413, 415, 502, 503, 504)


def install(app: FastAPI, request_models: list[type[BaseModel]]) -> None:
    """Generate the schema once, adding the request models that routes reference by $ref."""

    def openapi() -> dict:
        if app.openapi_schema is None:
            schema = get_openapi(title=app.title, version=app.version,
                                 description=app.description, routes=app.routes)
            components = schema.setdefault("components", {}).setdefault("schemas", {})
            for model in request_models:
                model_schema = model.model_json_schema(ref_template=_REF)
                components.update(model_schema.pop("$defs", {}))
                components[model.__name__] = model_schema
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi
