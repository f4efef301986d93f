"""FastAPI dependencies: typed access to the lifespan's services and the caller's identity."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from .services import Services
from .tenancy.auth import Principal


async def get_services(request: Request) -> Services:
    # async: FastAPI runs a plain `def` dependency in a thread pool, a thread hop per request.
    return request.app.state.services


ServicesDep = Annotated[Services, Depends(get_services)]


async def get_principal(request: Request, services: ServicesDep) -> Principal:
    """The API key's organisation and scopes, or 401/403 before the body is even read."""
    principal = await services.auth.authenticate(request.headers.get("authorization"))
    trace = request.state.trace
    trace.org, trace.key_id = principal.org_id, principal.key_id
    return principal


PrincipalDep = Annotated[Principal, Depends(get_principal)]
