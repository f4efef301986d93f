"""Batch jobs in the admin API (ADMIN_TOKEN): every open job and the runners at work, one
organisation's batches, and cancelling one (audited). `gatewayctl batch` reads these."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request

from ..batches.jobs import JobStore
from ..deps import AuditDep, BatchesDep
from ..errors import Conflict, NotFound
from .admin import ADMIN_ERRORS, require_admin

router = APIRouter(prefix="/admin", tags=["admin"], dependencies=[Depends(require_admin)],
                   responses=ADMIN_ERRORS)


@router.get("/batches", summary="Every batch job not yet finished, and the batch runners")
async def open_batches(batches: BatchesDep) -> dict:
    jobs = await batches.open_jobs()
    return {"data": [{"org_id": org, **batch.model_dump()} for org, batch in jobs],
            "runners": await batches.runners(batches.now())}


@router.get("/orgs/{org_id}/batches", summary="One organisation's batches, newest first")
async def org_batches(org_id: str, batches: BatchesDep,
                      limit: Annotated[int, Query(ge=1, le=100)] = 20,
                      after: str | None = None) -> dict:
    found, more = await batches.page(org_id, limit=limit, after=after)
    return {"data": [b.model_dump() for b in found], "has_more": more}


async def _one(batches: JobStore, org_id: str, batch_id: str):
    batch = await batches.get(org_id, batch_id)
    if batch is None:
        raise NotFound(f"No such batch: {batch_id[:64]}", param="batch_id")
    return batch


@router.get("/orgs/{org_id}/batches/{batch_id}", summary="One batch")
async def org_batch(org_id: str, batch_id: str, batches: BatchesDep) -> dict:
    return (await _one(batches, org_id, batch_id)).model_dump()


@router.post("/orgs/{org_id}/batches/{batch_id}/cancel", summary="Cancel a batch (audited)")
async def cancel_org_batch(org_id: str, batch_id: str, request: Request,
                           audit: AuditDep, batches: BatchesDep) -> dict:
    before = await _one(batches, org_id, batch_id)
    if await batches.cancel(org_id, batch_id) == "" \
            and before.status not in ("cancelling", "cancelled"):
        raise Conflict(f"a batch that is {before.status} cannot be cancelled")
    after = await _one(batches, org_id, batch_id)
    await audit.record("batch.cancel", f"{org_id}/{batch_id}",
                                before={"status": before.status},
                                after={"status": after.status}, request_id=request.state.request_id)
    return after.model_dump()
