"""The one place where exceptions become HTTP answers: in OpenAI's error shape, and in
Anthropic's on the routes that speak its protocol (endpoints.py, messages/errors.py)."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect
from starlette.responses import Response

from redis.exceptions import RedisError

from .client_limits import EDGE_REFUSAL
from .endpoints import ANTHROPIC_PATHS
from .errors import (ClientClosedRequest, GatewayError, InvalidRequest, RouteNotFound,
                     StateUnavailable)
from .messages import errors as anthropic

log = logging.getLogger("llmgw.errors")


def error_response(error: GatewayError, request: Request | None = None) -> Response:
    trace = getattr(request.state, "trace", None) if request is not None else None
    if trace is not None:
        trace.error_code = error.code
    return Response(_body(error, request), status_code=error.status,
                    media_type="application/json", headers=error.headers)


def _body(error: GatewayError, request: Request | None) -> bytes:
    """OpenAI's error shape, but on the routes speaking Anthropic's protocol (its SDKs' own)."""
    if request is not None and request.scope["path"] in ANTHROPIC_PATHS:
        return anthropic.body_bytes(error)
    return error.body_bytes()


async def _gateway_error(request: Request, exc: GatewayError) -> Response:
    return error_response(exc, request)


async def _http_exception(request: Request, exc: HTTPException) -> Response:
    if exc.status_code in (404, 405):
        return error_response(RouteNotFound(f"{exc.detail}", status=exc.status_code), request)
    return error_response(InvalidRequest(str(exc.detail)), request)


async def _validation_error(_request: Request, exc: RequestValidationError) -> Response:
    first = exc.errors()[0] if exc.errors() else {"loc": (), "msg": "invalid request"}
    param = ".".join(str(p) for p in first["loc"][1:]) or None
    return error_response(InvalidRequest(str(first["msg"]), param=param))


async def _redis_error(request: Request, _exc: RedisError) -> Response:
    return error_response(StateUnavailable(), request)


async def _client_gone(request: Request, _exc: ClientDisconnect) -> Response:
    # The connection closed while the body was read: the client left, or the HTTP protocol
    # answered (408) itself. Nobody reads this answer; the access line and metrics record it.
    told = request.scope.get(EDGE_REFUSAL)
    return error_response(told or ClientClosedRequest("the client closed the connection"),
                          request)


async def _unexpected(request: Request, exc: Exception) -> Response:
    # Logged with its trace for operators; the client gets no detail at all.
    log.exception("unhandled error", exc_info=exc)
    # On the framework path Starlette answers this outside every middleware, so the request-id
    # middleware never sees it; on the lane it does, and replaces this copy rather than adding one.
    request_id = getattr(request.state, "request_id", None)
    headers = {"x-request-id": request_id} if request_id else None
    return Response(_body(GatewayError("internal error"), request), status_code=500,
                    media_type="application/json", headers=headers)


def install(app: FastAPI) -> None:
    app.add_exception_handler(GatewayError, _gateway_error)
    app.add_exception_handler(HTTPException, _http_exception)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(RedisError, _redis_error)
    app.add_exception_handler(ClientDisconnect, _client_gone)
    app.add_exception_handler(Exception, _unexpected)
