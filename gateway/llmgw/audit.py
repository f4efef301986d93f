"""The audit trail of admin changes: a capped Redis stream, newest first when read."""

from __future__ import annotations

from collections.abc import Callable
from contextvars import ContextVar

import orjson
from redis.asyncio import Redis

from .keyspace import AUDIT_STREAM

AUDIT_MAX_ENTRIES = 1_000_000
# Who makes the changes of the request being served: "admin" (the admin token) or "console"
# (a console session's admin); set by the admin API's guard, read when an entry is recorded.
AUDIT_ACTOR: ContextVar[str] = ContextVar("llmgw_audit_actor", default="admin")


class AuditLog:
    """Records when, what, the target and the fields before and after (callers pass no secrets)."""

    def __init__(self, redis: Redis, clock: Callable[[], float]) -> None:
        self._r = redis
        self._clock = clock

    async def record(self, action: str, target: str, *, before: dict | None,
                     after: dict | None, request_id: str | None) -> None:
        entry = {"ts": repr(self._clock()), "actor": AUDIT_ACTOR.get(), "action": action, "target": target,
                 "before": orjson.dumps(before), "after": orjson.dumps(after),
                 "request_id": request_id or ""}
        await self._r.xadd(AUDIT_STREAM, entry, maxlen=AUDIT_MAX_ENTRIES, approximate=True)

    async def read(self, limit: int, before: str | None, *, org_id: str | None = None,
                   action: str | None = None) -> tuple[list[dict], str | None]:
        """Up to `limit` entries older than the cursor `before`, and the next cursor. With
        `org_id` and `action` (a name, or a prefix ending in "."), only matching entries: up
        to SCAN_MOST are looked at per call, and the cursor says where the next call goes on."""
        if before is not None and not any(map(int, before.split("-"))):
            return [], None  # nothing is older than 0-0 (and Redis refuses the exclusive "(0-0")
        wanted = _matcher(org_id, action)
        data, scanned, cursor = [], 0, before
        while len(data) < limit and scanned < SCAN_MOST:
            upper = f"({cursor}" if cursor else "+"
            page = limit if wanted is None else SCAN_PAGE
            rows = await self._r.xrevrange(AUDIT_STREAM, max=upper, min="-", count=page)
            for entry_id, f in rows:
                scanned += 1
                cursor = entry_id
                entry = _entry(entry_id, f)
                if wanted is None or wanted(entry):
                    data.append(entry)
                    if len(data) == limit:
                        return data, cursor
            if len(rows) < page:
                return data, None  # the oldest entry was read
        return data, cursor


SCAN_PAGE, SCAN_MOST = 500, 20_000


def _entry(entry_id: str, f: dict) -> dict:
    return {"id": entry_id, "ts": float(f["ts"]), "actor": f["actor"], "action": f["action"],
            "target": f["target"], "before": orjson.loads(f["before"]),
            "after": orjson.loads(f["after"]), "request_id": f["request_id"] or None}


def _matcher(org_id: str | None, action: str | None):
    if org_id is None and action is None:
        return None

    def wanted(entry: dict) -> bool:
        if org_id is not None and entry["target"] != org_id \
                and not entry["target"].startswith(org_id + "/"):
            return False
        if action is not None and entry["action"] != action \
                and not (action.endswith(".") and entry["action"].startswith(action)):
            return False
        return True
    return wanted
