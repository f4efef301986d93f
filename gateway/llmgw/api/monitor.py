"""Usage for monitoring: GET /monitor/key_usage (each API key's counters on one day) and GET
/monitor/usage (an organisation's, or a key's, counters per hour, day or month, as JSON or
CSV). For the admin token (every organisation) and for `monitor`-scoped keys (their own
organisation only: another's id answers 404, as if it did not exist)."""

from __future__ import annotations

import csv
import io
from datetime import date, datetime, timezone
from typing import Annotated, Literal

import anyio
from fastapi import APIRouter, Query
from starlette.responses import Response

from ..deps import (MONITOR_ERRORS, MonitorViewerDep, OverviewDep, TenancyAdminDep,
                    TenancyStoreDep, UsageReportDep)
from ..errors import InvalidRequest, NotFound
from ..openapi import MONITOR, error_responses
from .admin import ORG_ID
from .json_response import OrjsonResponse

router = APIRouter(tags=["monitoring"])
ALL_ORGS = 10_000  # the admin token's view without org_id: organisations read at most
MOST_BUCKETS = {"hour": 24 * 92, "day": 400, "month": 24}
COUNTERS = ("requests", "success", "errors", "prompt_tokens", "completion_tokens")


@router.get("/monitor/key_usage",
            summary="Each key's requests, errors and tokens on one UTC day, busiest first "
                    "(admin token, or a `monitor`-scoped key: its own organisation)",
            responses={**MONITOR_ERRORS, **error_responses(400, 404)},
            openapi_extra={"security": MONITOR})
async def key_usage(tenancy_admin: TenancyAdminDep, tenancy_store: TenancyStoreDep, usage_report: UsageReportDep, viewer: MonitorViewerDep,
                    limit: Annotated[int, Query(ge=1, le=1000)] = 50,
                    bucket: Annotated[str | None, Query(pattern=r"^[0-9]{8}$",
                                                        description="YYYYMMDD (UTC); default today")] = None,
                    org_id: Annotated[str | None, Query(pattern=ORG_ID)] = None) -> dict:
    report = usage_report
    day = await report.today() if bucket is None else _day(bucket)
    if viewer is not None and org_id not in (None, viewer):
        raise NotFound(f"no organisation {org_id!r}", param="org_id")  # others' do not exist
    wanted = viewer or org_id
    if wanted is not None:
        orgs = [await tenancy_admin.org(wanted)]
    else:
        orgs, _ = await tenancy_store.list_orgs(0, ALL_ORGS)
    keys = await report.key_usage(orgs, day, limit)
    return {"object": "list", "bucket": date.fromordinal(day + _EPOCH).strftime("%Y%m%d"),
            "limit": limit, "data": keys}


@router.get("/monitor/usage",
            summary="An organisation's (or one key's) requests, errors and tokens per hour, day "
                    "or month (UTC), oldest first, as JSON or CSV (admin token with org_id, or a "
                    "`monitor`-scoped key: its own organisation)",
            responses={**MONITOR_ERRORS, **error_responses(400, 404)},
            openapi_extra={"security": MONITOR})
async def usage_series(tenancy_admin: TenancyAdminDep, usage_report: UsageReportDep, viewer: MonitorViewerDep,
                       granularity: Literal["hour", "day", "month"] = "day",
                       count: Annotated[int, Query(ge=1, le=MOST_BUCKETS["hour"])] = 30,
                       org_id: Annotated[str | None, Query(pattern=ORG_ID)] = None,
                       key_id: Annotated[str | None, Query(pattern=r"^[0-9a-f]{16}$")] = None,
                       format: Literal["json", "csv"] = "json") -> Response:
    if count > MOST_BUCKETS[granularity]:
        raise InvalidRequest(f"count: at most {MOST_BUCKETS[granularity]} for {granularity}s",
                             param="count")
    if viewer is not None and org_id not in (None, viewer):
        raise NotFound(f"no organisation {org_id!r}", param="org_id")
    if (viewer or org_id) is None:
        raise InvalidRequest("org_id: which organisation (the admin token sees every one)",
                             param="org_id")
    org = await tenancy_admin.org(viewer or org_id)
    rows = await usage_report.series(org, granularity, count, key_id)
    if format == "csv":
        return Response(_csv(rows), media_type="text/csv; charset=utf-8", headers={
            "Content-Disposition": f'attachment; filename="usage-{org.id}-{granularity}.csv"'})
    return OrjsonResponse({"object": "list", "org_id": org.id, "key_id": key_id,
                           "granularity": granularity, "data": rows})


def _csv(rows: list[dict]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["start", *COUNTERS])
    for row in rows:
        start = datetime.fromtimestamp(row["start"], timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        writer.writerow([start, *(row[c] for c in COUNTERS)])
    return out.getvalue()


@router.get("/monitor/overview",
            summary="The last hour per model on this gateway instance: requests and tokens per "
                    "second, error and refusal rates, latency p50/p95/p99 (admin token or a "
                    "`monitor`-scoped key)",
            responses=MONITOR_ERRORS, openapi_extra={"security": MONITOR})
async def overview(overview: OverviewDep, viewer: MonitorViewerDep) -> dict:
    return await anyio.to_thread.run_sync(overview.report)


_EPOCH = date(1970, 1, 1).toordinal()


def _day(bucket: str) -> int:
    try:
        return date(int(bucket[:4]), int(bucket[4:6]), int(bucket[6:])).toordinal() - _EPOCH
    except ValueError:
        raise InvalidRequest(f"bucket {bucket!r} is not a date (YYYYMMDD)", param="bucket") from None
