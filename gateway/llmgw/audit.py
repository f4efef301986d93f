"""The audit trail of admin changes: a capped Redis stream, newest first when read."""

from __future__ import annotations

from collections.abc import Callable
from contextvars import ContextVar

import orjson
from redis.asyncio import Redis

AUDIT_STREAM = "llmgw:audit"
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

    async def read(self, limit: int, before: str | None) -> tuple[list[dict], str | None]:
        """Up to `limit` entries older than the cursor `before`, and the next cursor."""
        if before is not None and not any(map(int, before.split("-"))):
            return [], None  # nothing is older than 0-0 (and Redis refuses the exclusive "(0-0")
        upper = f"({before}" if before else "+"
        rows = await self._r.xrevrange(AUDIT_STREAM, max=upper, min="-", count=limit)
        data = [{"id": entry_id, "ts": float(f["ts"]), "actor": f["actor"], "action": f["action"],
                 "target": f["target"], "before": orjson.loads(f["before"]),
                 "after": orjson.loads(f["after"]), "request_id": f["request_id"] or None}
                for entry_id, f in rows]
        return data, (data[-1]["id"] if len(data) == limit else None)
