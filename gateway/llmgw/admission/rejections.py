"""Why an organisation's requests were refused lately: the last REJECTIONS_KEPT refusals for
a limit or a quota (429), with the limit, the key, when and the wait it was told, kept in
Redis for REJECTIONS_TTL_SECS so every worker's show up in one list (the console's quota
page, `gatewayctl rejections`, GET /admin/orgs/{org}/rejections).

Written off the request path (a background task), and at most once a second per worker for
each organisation, key and limit: a flood of refusals costs Redis a write a second, not one
per refusal; each entry says how many refusals it stands for.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import orjson
from redis.asyncio import Redis
from redis.exceptions import RedisError

from .. import keyspace
from ..background import BackgroundTasks

log = logging.getLogger(__name__)
REJECTIONS_KEPT = 50
REJECTIONS_TTL_SECS = 7 * 86400
NOTE_EVERY_SECS = 1.0
TRACKED_MOST = 10_000  # (org, key, limit) triples remembered by one worker between writes


class Rejections:
    def __init__(self, redis: Redis, tasks: BackgroundTasks, clock: Callable[[], float]) -> None:
        self._r, self._tasks, self._clock = redis, tasks, clock
        self._last: dict[tuple[str, str, str], tuple[float, int]] = {}  # -> (written at, since)

    def note(self, org_id: str, key_id: str, code: str, retry_after_secs: int) -> None:
        """A refusal: written now if none of its kind was in the last second, else counted
        towards the next one that is."""
        now = self._clock()
        kind = (org_id, key_id, code)
        written, unwritten = self._last.get(kind, (0.0, 0))
        if now - written < NOTE_EVERY_SECS:
            self._last[kind] = (written, unwritten + 1)
            return
        if len(self._last) >= TRACKED_MOST:
            self._last.clear()
        self._last[kind] = (now, 0)
        entry = {"at": now, "key_id": key_id, "code": code, "retry_after_secs": retry_after_secs,
                 "refusals": unwritten + 1}
        self._tasks.spawn(self._write(org_id, entry))

    async def _write(self, org_id: str, entry: dict) -> None:
        key = keyspace.rejections(org_id)
        try:
            async with self._r.pipeline(transaction=False) as pipe:
                pipe.lpush(key, orjson.dumps(entry))
                pipe.ltrim(key, 0, REJECTIONS_KEPT - 1)
                pipe.expire(key, REJECTIONS_TTL_SECS)
                await pipe.execute()
        except (RedisError, OSError) as exc:  # a lost note is no reason to fail anything
            log.debug("rejection not recorded: %s", exc)

    async def recent(self, org_id: str, limit: int = REJECTIONS_KEPT) -> list[dict]:
        """Newest first. Each note is written by a task of its own, so two written close
        together may reach Redis in either order: sorted by their time here."""
        raws = await self._r.lrange(keyspace.rejections(org_id), 0, limit - 1)
        return sorted((orjson.loads(raw) for raw in raws), key=lambda e: e["at"], reverse=True)
