"""FastAPI dependencies: typed access to the lifespan's services and the caller's identity."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from redis.asyncio import Redis

from . import admin_token
from .batches.item import BATCH_ITEM_HEADER
from .console.credentials import is_admin, session_of
from .endpoints import ANTHROPIC_PATHS
from .openapi import error_responses
from .admission.gate import AdmissionGate
from .admission.rejections import Rejections
from .admission.report import UsageReport
from .audit import AuditLog
from .batches.jobs import JobStore
from .console.sessions import ConsoleSessions
from .files.store import FileStore
from .observability.metrics import Metrics
from .observability.overview import Overview
from .responses.store import ResponseStore
from .routing import RoutingTable
from .services import Services
from .settings import Settings
from .tenancy.admin import TenancyAdmin
from .tenancy.store import TenancyStore
from .tenancy.apikeys import bearer_token
from .tenancy.auth import Authenticator, Principal
from .tenancy.records import KeyScope


async def get_services(request: Request) -> Services:
    # async: FastAPI runs a plain `def` dependency in a thread pool, a thread hop per request.
    return request.app.state.services


ServicesDep = Annotated[Services, Depends(get_services)]


def _service(name: str):
    """A dependency giving one of the lifespan's services: a handler asks for what it uses."""
    async def service(request: Request):
        return getattr(request.app.state.services, name)
    service.__name__ = f"get_{name}"
    return Depends(service)


SettingsDep = Annotated[Settings, _service("settings")]
RoutingDep = Annotated[RoutingTable, _service("routing")]
RoutingLoadedAtDep = Annotated[int, _service("routing_loaded_at")]
AuthDep = Annotated[Authenticator, _service("auth")]
AdmissionDep = Annotated[AdmissionGate, _service("admission")]
TenancyStoreDep = Annotated[TenancyStore, _service("tenancy_store")]
TenancyAdminDep = Annotated[TenancyAdmin, _service("tenancy_admin")]
UsageReportDep = Annotated[UsageReport, _service("usage_report")]
AuditDep = Annotated[AuditLog, _service("audit")]
RejectionsDep = Annotated[Rejections, _service("rejections")]
OverviewDep = Annotated[Overview, _service("overview")]
MetricsDep = Annotated[Metrics, _service("metrics")]
RedisDep = Annotated[Redis, _service("redis")]
BatchesDep = Annotated[JobStore, _service("batches")]
FilesDep = Annotated[FileStore, _service("files")]
ResponsesDep = Annotated[ResponseStore, _service("responses")]
ConsoleDep = Annotated[ConsoleSessions, _service("console")]


async def get_principal(request: Request, services: ServicesDep) -> Principal:
    """The API key's organisation and scopes, or 401/403 before the body is even read. A
    batch runner's line runs as the key that created its job (batches/lane.py)."""
    item = request.headers.get(BATCH_ITEM_HEADER)
    if item is None:
        principal = await services.auth.authenticate_key(presented_key(request))
    else:
        principal = await services.batch_lane.principal(
            bearer_token(request.headers.get("authorization")), item, request.headers)
    trace = request.state.trace
    trace.org, trace.key_id = principal.org_id, principal.key_id
    return principal


PrincipalDep = Annotated[Principal, Depends(get_principal)]


def presented_key(request: Request) -> str | None:
    """The API key of `Authorization: Bearer`; on the routes speaking Anthropic's protocol,
    whose SDKs send it as `x-api-key`, that header too when no Bearer token came. Elsewhere an
    x-api-key header is no credential at all."""
    key = bearer_token(request.headers.get("authorization"))
    if key is None and request.scope["path"] in ANTHROPIC_PATHS:
        key = request.headers.get("x-api-key")
    return key


async def monitor_viewer(request: Request, services: ServicesDep) -> str | None:
    """The admin token (None: sees every organisation), or an API key with the `monitor`
    scope (its organisation's id: sees that one only); without either in the headers, the
    console session of the cookie, checked against the credential it was opened with."""
    presented = admin_token.presented(request)
    if admin_token.matches(presented, services.settings.admin_token):
        return None
    session = await session_of(request, services.console) if presented is None else None
    if is_admin(session, services.settings.admin_token):
        return None
    if session is not None and session.role == "monitor":
        principal = await services.auth.authenticate_digest(session.credential)
    else:
        principal = await services.auth.authenticate(request.headers.get("authorization"))
    principal.require(KeyScope.MONITOR)
    return principal.org_id


async def require_monitor(request: Request, services: ServicesDep) -> None:
    """The admin token, or an API key with the `monitor` scope (for /metrics, /health/detailed)."""
    await monitor_viewer(request, services)


MonitorViewerDep = Annotated[str | None, Depends(monitor_viewer)]


# 401 without the admin token or a valid key, 403 for a key without the monitor scope, 503 when
# Redis cannot check the key.
MONITOR_ERRORS = error_responses(401, 403, 503)
