"""Correlation ids: accept the client's X-Request-ID when it is sane, else make one; always echo it."""

from __future__ import annotations

import re
import uuid

_SAFE_ID = re.compile(rb"^[A-Za-z0-9._:-]{1,128}$")


def new_request_id() -> str:
    return uuid.uuid4().hex


class RequestIdMiddleware:
    """Pure ASGI middleware (no BaseHTTPMiddleware: it buffers and breaks streaming).

    The id lands in `scope["state"]["request_id"]` for handlers and on every response,
    error responses included. A client value that is long or odd is replaced, because it
    flows into logs and backend headers.
    """

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = None
        for name, value in scope["headers"]:
            if name == b"x-request-id":
                if _SAFE_ID.match(value):
                    request_id = value.decode("ascii")
                break
        if request_id is None:
            request_id = new_request_id()
        scope.setdefault("state", {})["request_id"] = request_id
        header = (b"x-request-id", request_id.encode("ascii"))

        async def send_with_id(message) -> None:
            if message["type"] == "http.response.start":
                # Set, never appended: an error handler may have set it already (it must, for
                # the errors Starlette answers outside every middleware), and two copies are
                # one header too many for clients and proxies that read a single value.
                message["headers"] = [*(h for h in message.get("headers", ())
                                        if h[0].lower() != b"x-request-id"), header]
            await send(message)

        await self.app(scope, receive, send_with_id)
