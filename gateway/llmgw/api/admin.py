"""The admin API under /admin: organisations, their keys, and the audit trail.

Guarded by ADMIN_TOKEN (seed 000's rules): unset → 503 admin_unavailable on every route;
missing or wrong → 401 unauthorized; compared in constant time.
"""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query, Request
from starlette.responses import JSONResponse

from .. import admin_token
from ..audit import AUDIT_ACTOR
from ..body import read_json_object
from ..console.credentials import is_admin, session_of
from ..deps import (AuditDep, BatchesDep, ConsoleDep, FilesDep, RejectionsDep, SettingsDep,
                    TenancyAdminDep, TenancyStoreDep, UsageReportDep)
from ..errors import AdminUnauthorized, AdminUnavailable
from ..openapi import error_responses, json_body
from ..protocol import validate
from ..tenancy.admin_bodies import KeyCreate, KeyRotate, OrgCreate, OrgPatch


async def require_admin(request: Request, console: ConsoleDep, settings: SettingsDep) -> None:
    """The admin token in the headers, or else the console's admin session (its cookie; and
    for a change, its CSRF token)."""
    expected = settings.admin_token
    if expected is None:
        raise AdminUnavailable("the admin API is disabled: ADMIN_TOKEN is not set")
    presented = admin_token.presented(request)
    if admin_token.matches(presented, expected):
        return
    if presented is None and is_admin(await session_of(request, console), expected):
        AUDIT_ACTOR.set("console")  # the changes of this request are the console's
        return
    raise AdminUnauthorized("missing or wrong admin token (Authorization: Bearer or X-Admin-Token)")


ADMIN_ERRORS = error_responses(400, 401, 404, 409, 503)
BODY_ERRORS = error_responses(413, 415)  # reading a body: too large, or not JSON
router = APIRouter(prefix="/admin", tags=["admin"], dependencies=[Depends(require_admin)],
                   responses=ADMIN_ERRORS)
Limit = Annotated[int, Query(ge=1, le=500)]
# Bounded: Redis refuses ranges past 64 bits, and a client's typo is a 400, not a 503.
Offset = Annotated[int, Query(ge=0, le=10**9)]
# An audit stream id (ms-seq); 19 digits stay within Redis' 64-bit ids.
ORG_ID = r"^org_[0-9a-f]{16}$"  # an organisation's id, as the admin API makes them
AuditCursor = Annotated[str | None, Query(pattern=r"^[0-9]{1,19}-[0-9]{1,19}$")]  # ASCII digits only


async def _body(request: Request, max_bytes: int, schema, *, optional: bool = False):
    raw = await read_json_object(request, max_bytes,
                                 empty={} if optional else None)
    return validate(schema, raw)


def _rid(request: Request) -> str:
    return request.state.request_id


@router.post("/orgs", status_code=201, openapi_extra=json_body(OrgCreate), responses=BODY_ERRORS,
             summary="Create an organisation and its first API key (shown once)")
async def create_org(request: Request, settings: SettingsDep, tenancy_admin: TenancyAdminDep) -> JSONResponse:
    admin = tenancy_admin
    org, raw, key = await admin.create_org(await _body(request, settings.max_body_bytes, OrgCreate), _rid(request))
    return JSONResponse({"org": admin.view(org), "api_key": raw, "key": key.public()}, status_code=201)


@router.get("/orgs", summary="List organisations (paginated)")
async def list_orgs(tenancy_admin: TenancyAdminDep, tenancy_store: TenancyStoreDep, limit: Limit = 50, offset: Offset = 0) -> dict:
    orgs, total = await tenancy_store.list_orgs(offset, limit)
    return {"data": [tenancy_admin.view(o) for o in orgs], "total": total,
            "limit": limit, "offset": offset}


@router.get("/orgs/{org_id}", summary="One organisation with its limits in force")
async def get_org(org_id: str, tenancy_admin: TenancyAdminDep) -> dict:
    admin = tenancy_admin
    return {"org": admin.view(await admin.org(org_id))}


@router.patch("/orgs/{org_id}", openapi_extra=json_body(OrgPatch), responses=BODY_ERRORS,
              summary="Change limits (profile plus overrides), status or time zone")
async def patch_org(org_id: str, request: Request, settings: SettingsDep, tenancy_admin: TenancyAdminDep) -> dict:
    admin = tenancy_admin
    body = await _body(request, settings.max_body_bytes, OrgPatch)
    return {"org": admin.view(await admin.patch_org(org_id, body, _rid(request)))}


@router.delete("/orgs/{org_id}", summary="Delete an organisation, all its keys and its files")
async def delete_org(org_id: str, request: Request, batches: BatchesDep, files: FilesDep, tenancy_admin: TenancyAdminDep) -> dict:
    await tenancy_admin.delete_org(org_id, _rid(request))
    await batches.delete_org(org_id)  # after: a failure here leaves no org behind
    await files.delete_org(org_id)
    return {"deleted": org_id}


@router.post("/orgs/{org_id}/keys", status_code=201, openapi_extra=json_body(KeyCreate),
             responses=BODY_ERRORS,
             summary="Create an API key (shown once)")
async def create_key(org_id: str, request: Request, settings: SettingsDep, tenancy_admin: TenancyAdminDep) -> JSONResponse:
    admin = tenancy_admin
    org = await admin.org(org_id)
    raw, key = await admin.create_key(org, await _body(request, settings.max_body_bytes, KeyCreate), _rid(request))
    return JSONResponse({"api_key": raw, "key": key.public()}, status_code=201)


@router.get("/orgs/{org_id}/keys", summary="An organisation's keys: public ids and metadata")
async def list_keys(org_id: str, tenancy_admin: TenancyAdminDep, tenancy_store: TenancyStoreDep) -> dict:
    org = await tenancy_admin.org(org_id)
    return {"data": [k.public() for k in await tenancy_store.list_keys(org.id)]}


@router.post("/keys/{key_id}/rotate", openapi_extra=json_body(KeyRotate, required=False),
             responses=BODY_ERRORS,
             summary="Issue a new key; the old one stays valid for grace_secs")
async def rotate_key(key_id: str, request: Request, settings: SettingsDep, tenancy_admin: TenancyAdminDep) -> dict:
    body = await _body(request, settings.max_body_bytes, KeyRotate, optional=True)
    raw, new, old = await tenancy_admin.rotate_key(key_id, body, _rid(request))
    return {"api_key": raw, "key": new.public(), "old_key": old.public()}


@router.delete("/keys/{key_id}", summary="Revoke a key (effective on every worker within a second)")
async def revoke_key(key_id: str, request: Request, tenancy_admin: TenancyAdminDep) -> dict:
    return {"key": (await tenancy_admin.revoke_key(key_id, _rid(request))).public()}


@router.get("/usage", summary="Usage per organisation over a window (hourly/daily buckets)")
async def usage(tenancy_store: TenancyStoreDep, usage_report: UsageReportDep, window: Annotated[Literal["1h", "24h", "7d", "30d"], Query()] = "24h",
                limit: Limit = 100, offset: Offset = 0) -> dict:
    orgs, total = await tenancy_store.list_orgs(offset, limit)
    return {**await usage_report.usage(orgs, window), "total": total,
            "limit": limit, "offset": offset}


@router.get("/quota/{org_id}", summary="Each limit of one organisation: configured, used, remaining, reset")
async def quota(org_id: str, tenancy_admin: TenancyAdminDep, usage_report: UsageReportDep) -> dict:
    return await usage_report.quota(await tenancy_admin.org(org_id))


@router.get("/orgs/{org_id}/rejections",
            summary="Its latest refusals for a limit or quota (429): when, which key, which limit")
async def rejections(org_id: str, rejections: RejectionsDep, tenancy_admin: TenancyAdminDep,
                     limit: Annotated[int, Query(ge=1, le=50)] = 50) -> dict:
    org = await tenancy_admin.org(org_id)
    return {"org_id": org.id, "data": await rejections.recent(org.id, limit)}


@router.get("/quotas", summary="Quota state of every organisation (paginated)")
async def quotas(tenancy_store: TenancyStoreDep, usage_report: UsageReportDep, limit: Limit = 50, offset: Offset = 0) -> dict:
    orgs, total = await tenancy_store.list_orgs(offset, limit)
    return {"data": await usage_report.quotas(orgs), "total": total,
            "limit": limit, "offset": offset}


@router.get("/audit", summary="The audit trail of admin changes, newest first")
async def audit(audit: AuditDep, limit: Limit = 50, before: AuditCursor = None,
                org_id: Annotated[str | None, Query(pattern=ORG_ID, description=(
                    "only entries about this organisation (or its keys, files, batches)"))] = None,
                action: Annotated[str | None, Query(pattern=r"^[a-z_]{1,32}(\.[a-z_]{0,32})?$", description=(
                    "only this action (key.revoke), or every action of a kind (key.)"))] = None) -> dict:
    data, cursor = await audit.read(limit, before, org_id=org_id, action=action)
    return {"data": data, "next_before": cursor}
