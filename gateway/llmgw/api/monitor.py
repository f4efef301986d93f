"""GET /monitor/key_usage: each API key's counters on one day, for the admin token (every
organisation, or one) and for `monitor`-scoped keys (their own organisation only)."""

from __future__ import annotations

from datetime import date
from typing import Annotated

from fastapi import APIRouter, Query

from ..deps import MONITOR_ERRORS, MonitorViewerDep, ServicesDep
from ..errors import InvalidRequest, NotFound
from ..openapi import MONITOR, error_responses

router = APIRouter(tags=["monitoring"])
ALL_ORGS = 10_000  # the admin token's view without org_id: organisations read at most


@router.get("/monitor/key_usage",
            summary="Each key's requests, errors and tokens on one UTC day, busiest first "
                    "(admin token, or a `monitor`-scoped key: its own organisation)",
            responses={**MONITOR_ERRORS, **error_responses(400, 404)},
            openapi_extra={"security": MONITOR})
async def key_usage(services: ServicesDep, viewer: MonitorViewerDep,
                    limit: Annotated[int, Query(ge=1, le=1000)] = 50,
                    bucket: Annotated[str | None, Query(pattern=r"^\d{8}$",
                                                        description="YYYYMMDD (UTC); default today")] = None,
                    org_id: Annotated[str | None, Query(max_length=64)] = None) -> dict:
    report = services.usage_report
    day = await report.today() if bucket is None else _day(bucket)
    if viewer is not None and org_id not in (None, viewer):
        raise NotFound(f"no organisation {org_id!r}", param="org_id")  # others' do not exist
    wanted = viewer or org_id
    if wanted is not None:
        orgs = [await services.tenancy_admin.org(wanted)]
    else:
        orgs, _ = await services.tenancy_store.list_orgs(0, ALL_ORGS)
    keys = await report.key_usage(orgs, day, limit)
    return {"object": "list", "bucket": date.fromordinal(day + _EPOCH).strftime("%Y%m%d"),
            "limit": limit, "data": keys}


_EPOCH = date(1970, 1, 1).toordinal()


def _day(bucket: str) -> int:
    try:
        return date(int(bucket[:4]), int(bucket[4:6]), int(bucket[6:])).toordinal() - _EPOCH
    except ValueError:
        raise InvalidRequest(f"bucket {bucket!r} is not a date (YYYYMMDD)", param="bucket") from None
