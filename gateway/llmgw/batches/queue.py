"""The work queue of batch lines, in Redis: claim a line, record its result once, give it
back for later, keep leases alive. Lines, not jobs, are the unit: any runner takes any line,
and a runner that dies leaves only leases that run out (claim.lua runs them again)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import orjson
from redis.asyncio import Redis

from .. import keyspace
from .jobs import SCRIPTS

DUE_SCAN = 64  # expired leases claim.lua looks at per call


@dataclass(frozen=True, slots=True)
class Claim:
    """One line of one job, held by one attempt."""
    org_id: str
    batch_id: str
    line: int
    attempt: int

    @property
    def member(self) -> str:
        return f"{keyspace.batch_ref(self.org_id, self.batch_id)}:{self.line}"


class WorkQueue:
    def __init__(self, redis: Redis, *, lease_ms: int) -> None:
        self._redis, self.lease_ms = redis, lease_ms
        load = lambda name: redis.register_script((SCRIPTS / name).read_text())  # noqa: E731
        self._claim, self._done = load("claim.lua"), load("done.lua")
        self._release, self._lease_first = load("release.lua"), load("lease_first.lua")
        self._bitmap = load("bitmap_hex.lua")

    async def claim(self, skip_models: Iterable[str] = ()) -> Claim | None:
        found = await self._claim(
            keys=[keyspace.BATCH_RUNNABLE, keyspace.BATCH_LEASES, keyspace.BATCH_ORGLOAD, keyspace.BATCH],
            args=[self.lease_ms, orjson.dumps(sorted(skip_models)).decode(), DUE_SCAN])
        if not found:
            return None
        return Claim(found[0], found[1], int(found[2]), int(found[3]))

    async def done(self, claim: Claim, outcome: str, usage: tuple[int, int, int, int]) -> int:
        """done.lua: 0 too late (another attempt holds the line), 1 recorded, 2 recorded and
        the job is ready to finalise."""
        o, b = claim.org_id, claim.batch_id
        return int(await self._done(
            keys=[keyspace.batch_job(o, b), keyspace.BATCH_LEASES, keyspace.BATCH_ORGLOAD, keyspace.batch_done(o, b), keyspace.batch_attempts(o, b),
                  keyspace.batch_winners(o, b)],
            args=[claim.member, o, claim.line, claim.attempt, outcome, *usage]))

    async def release(self, claim: Claim, delay_ms: int) -> bool:
        return bool(await self._release(
            keys=[keyspace.BATCH_LEASES, keyspace.batch_attempts(claim.org_id, claim.batch_id)],
            args=[claim.member, claim.line, claim.attempt, max(1, delay_ms)]))

    async def renew(self, claims: Iterable[Claim]) -> None:
        """Push the leases of lines still running forward (only those still leased)."""
        claims = list(claims)
        if not claims:
            return
        now_ms = int((await self._redis.time())[0]) * 1000
        await self._redis.zadd(keyspace.BATCH_LEASES, {c.member: now_ms + self.lease_ms for c in claims},
                               xx=True)

    async def pause(self, org_id: str, for_ms: int) -> None:
        """No line of this organisation starts for a while (its quota is spent until then)."""
        await self._redis.set(keyspace.batch_paused(org_id), 1, px=max(1000, for_ms))

    async def lease_validation(self, lease_ms: int) -> tuple[str, str] | None:
        member = await self._lease_first(keys=[keyspace.BATCH_VALIDATE], args=[lease_ms, ""])
        return None if member is None else keyspace.split_batch_ref(member)

    async def lease_finalising(self, org_id: str, batch_id: str, lease_ms: int) -> bool:
        return await self._lease_first(keys=[keyspace.BATCH_FINALISING],
                                       args=[lease_ms, keyspace.batch_ref(org_id, batch_id)]) is not None

    async def winners(self, org_id: str, batch_id: str) -> tuple[bytes, dict[int, int]]:
        """The done bitmap, and the attempt whose result counts for lines run more than once."""
        bitmap = await self._bitmap(keys=[keyspace.batch_done(org_id, batch_id)])
        won = await self._redis.hgetall(keyspace.batch_winners(org_id, batch_id))
        return bytes.fromhex(bitmap), {int(k): int(v) for k, v in won.items()}
