"""One request stack: every request passes the same middleware chain once (request id,
drain, access log), then an inference POST goes straight to its endpoint and everything else
to FastAPI's own stack (its router, its gzip). Both answer errors from one table of exception
handlers (error_handlers.py), so an error has the same shape, headers and access line on an
inference route and an admin route.

Why inference skips FastAPI's layers: every request through Starlette and FastAPI passes about
ten ASGI layers (server-error and telemetry middleware, gzip, the exception middleware, an
exit stack, the router, the route, the request-response wrapper and its exception wrapper),
each wrapping `send` again: about 300 of a request's 1,350 Python calls
(`bench/profile_inprocess.py`). An inference endpoint needs none of it: its route is a
dictionary lookup and DirectRoute resolves its two dependencies. The inference routes stay
registered with FastAPI too, so the OpenAPI document, HEAD or GET on them (405) and a
non-matching root path behave as for any route.
"""

from __future__ import annotations

import asyncio
import gzip
from collections.abc import Awaitable, Callable, Mapping
from types import MappingProxyType

from fastapi import FastAPI
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from ..drain import CloseWhenDraining
from ..observability.access import AccessMiddleware
from ..request_id import RequestIdMiddleware

Handler = Callable[[Request], Awaitable[Response]]
THREAD_MIN_BYTES = 128 * 1024  # compressing more than this would hold the event loop too long


class GatewayApp(FastAPI):
    """FastAPI, with the one chain outermost and inference endpoints beside its router."""

    inference: Mapping[str, ASGIApp] = MappingProxyType({})  # until serve_inference
    secrets: tuple[str, ...] = ()  # masked where the request id middleware logs

    def serve_inference(self, handlers: dict[str, Handler], *, gzip_min_bytes: int,
                        gzip_level: int) -> None:
        self.inference = {path: InferenceEndpoint(self, handler, gzip_min_bytes, gzip_level)
                          for path, handler in handlers.items()}

    def build_middleware_stack(self) -> ASGIApp:
        framework = super().build_middleware_stack()
        return RequestIdMiddleware(CloseWhenDraining(AccessMiddleware(
            _Dispatch(self, framework))), self.secrets)


class _Dispatch:
    """Inside the chain: an inference POST to its endpoint, anything else to FastAPI."""

    def __init__(self, app: GatewayApp, framework: ASGIApp) -> None:
        self.app, self.framework = app, framework

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            endpoint = self.app.inference.get(scope["path"])
            if endpoint is not None:
                await endpoint(scope, receive, send)
                return
        await self.framework(scope, receive, send)


async def answer_error(app: FastAPI, request: Request, exc: Exception) -> Response:
    """The app's exception handler for `exc`, looked up as Starlette looks it up."""
    handlers = app.exception_handlers
    for cls in type(exc).__mro__:
        if cls in handlers:
            return await handlers[cls](request, exc)
    raise exc  # unreachable while a handler for Exception is installed


class InferenceEndpoint:
    """One inference endpoint as an ASGI app: its handler, its errors as the app's exception
    handlers answer them, and gzip for a large JSON answer when the client accepts it (never
    for an event stream: the client must see each event when it is sent)."""

    def __init__(self, app: FastAPI, handler: Handler, gzip_min_bytes: int, gzip_level: int) -> None:
        self.app, self.handler = app, handler
        self.gzip_min_bytes, self.gzip_level = gzip_min_bytes, gzip_level

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        request = Request(scope, receive, send)
        try:
            response = await self.handler(request)
        except Exception as exc:  # noqa: BLE001 - every error becomes an answer, as in FastAPI
            response = await answer_error(self.app, request, exc)
        if self.gzip_min_bytes and not isinstance(response, StreamingResponse):
            await self._maybe_gzip(scope, response)
        await response(scope, receive, send)

    async def _maybe_gzip(self, scope: Scope, response: Response) -> None:
        body = response.body
        if (len(body) < self.gzip_min_bytes or "content-encoding" in response.headers
                or not response.headers.get("content-type", "").startswith("application/json")):
            return  # event streams (a cache replay is one body) are never compressed
        if not any(name == b"accept-encoding" and b"gzip" in value for name, value in scope["headers"]):
            return
        if len(body) >= THREAD_MIN_BYTES:
            packed = await asyncio.to_thread(gzip.compress, body, self.gzip_level, mtime=0)
        else:
            packed = gzip.compress(body, self.gzip_level, mtime=0)
        response.body = packed
        response.headers["content-encoding"] = "gzip"
        response.headers["content-length"] = str(len(packed))
        response.headers["vary"] = "Accept-Encoding"
