"""Graceful drain as clients see it: while draining, every answer says `Connection: close`."""

from __future__ import annotations


class CloseWhenDraining:
    """Pure ASGI middleware: once the worker drains (SIGTERM, or a HUP reload's old worker),
    each response start carries `Connection: close`, so uvicorn closes the connection after
    it and the client knows not to send another request on it.

    The alternative, the server closing a keep-alive connection the client still thinks is
    open, races the client's next request on it: the request meets a closed socket and the
    client sees a reset (httpx ReadError, nginx 502) for a POST it cannot safely resend.
    """

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_closing(message) -> None:
            if message["type"] == "http.response.start" and _draining(scope):
                headers = [h for h in message.get("headers", []) if h[0].lower() != b"connection"]
                message = {**message, "headers": [*headers, (b"connection", b"close")]}
            await send(message)

        await self.app(scope, receive, send_closing)


def _draining(scope) -> bool:
    services = getattr(scope["app"].state, "services", None)
    return services is not None and services.draining
