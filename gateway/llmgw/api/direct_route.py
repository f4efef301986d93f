"""The route class of the inference endpoints: their two dependencies resolved directly.

FastAPI's dependency solver costs about 70 µs a request on this path (measured: 83 µs for a
route with two dependencies against 14 µs for a plain Starlette route). The inference routes
only ever need the services and the caller's principal, so this route class hands them over
itself. The endpoint's signature still declares them with `Depends`, so the OpenAPI document
(security, errors, parameters) is unchanged.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from fastapi.routing import APIRoute
from starlette.requests import Request
from starlette.responses import Response

from ..deps import get_principal


class DirectRoute(APIRoute):
    """For endpoints declared as `(request, services: ServicesDep, principal: PrincipalDep)`."""

    def get_route_handler(self) -> Callable[[Request], Awaitable[Response]]:
        endpoint = self.endpoint

        async def handler(request: Request) -> Response:
            services = request.app.state.services
            principal = await get_principal(request, services)
            return await endpoint(request, services, principal)
        return handler
