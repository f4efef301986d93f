"""Batch jobs in Redis (keyspace.py names the keys): create, read, list, and every status change.

A job is one hash. Its status moves only through transition.lua, which checks the status it
moves from, so two runners (or a runner and a cancelling client) never both move it:

    validating -> in_progress -> finalizing -> completed
    validating -> failed                       (the input file is refused: `errors` say why)
    validating | in_progress -> cancelling -> cancelled
    validating | in_progress -> finalizing (ending=expired) -> expired   (the window passed)
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Mapping
from pathlib import Path

import orjson
from redis.asyncio import Redis

from .. import keyspace
from .protocol import (BatchErrors, BatchObject, BatchUsage, InputDetails, OutputDetails,
                       RequestCounts)

SCRIPTS = Path(__file__).resolve().parent / "scripts"
_TIMES = ("created_at", "in_progress_at", "expires_at", "finalizing_at", "completed_at",
          "failed_at", "expired_at", "cancelling_at", "cancelled_at")
_COUNTS = ("total", "completed", "failed", "in_tok", "out_tok", "cached_tok", "reasoning_tok")
STOPPABLE = ("validating", "in_progress")


def new_batch_id(now: float) -> str:
    """`batch_`, the creation time in milliseconds (12 hex digits), 16 random hex digits: ids
    sort in creation order."""
    return f"batch_{int(now * 1000):012x}{secrets.token_hex(8)}"


class JobStore:
    def __init__(self, redis: Redis, clock: Callable[[], float]) -> None:
        self._redis, self._clock = redis, clock
        self._transition = redis.register_script((SCRIPTS / "transition.lua").read_text())

    def now(self) -> float:
        return self._clock()

    async def create(self, org_id: str, batch_id: str, fields: Mapping[str, str | int],
                     *, runnable: bool) -> None:
        """A new job: validating (its input file still to check), or, `runnable`, in progress
        at once (a batch completion, validated as it was posted)."""
        member = keyspace.batch_ref(org_id, batch_id)
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.hset(keyspace.batch_job(org_id, batch_id), mapping=dict(fields))
            pipe.zadd(keyspace.batch_index(org_id), {batch_id: 0})
            pipe.zadd(keyspace.BATCH_OPEN, {member: int(fields["expires_at"]) * 1000})
            if runnable:
                pipe.zadd(keyspace.BATCH_RUNNABLE, {member: int(fields.get("priority", 0))})
            else:
                pipe.zadd(keyspace.BATCH_VALIDATE, {member: 0})
            await pipe.execute()

    async def fields(self, org_id: str, batch_id: str) -> dict[str, str] | None:
        found = await self._redis.hgetall(keyspace.batch_job(org_id, batch_id))
        return found or None

    async def get(self, org_id: str, batch_id: str) -> BatchObject | None:
        if not batch_id.startswith("batch_") or len(batch_id) > 64 or ":" in batch_id:
            return None
        found = await self.fields(org_id, batch_id)
        return None if found is None or found.get("kind") != "batch" else to_object(found)

    async def page(self, org_id: str, *, limit: int, after: str | None) -> tuple[list[BatchObject], bool]:
        """Newest first, up to `limit` after the cursor, and whether more follow."""
        ids = await self._redis.zrevrangebylex(keyspace.batch_index(org_id), f"({after}" if after else "+",
                                               "-", start=0, num=limit + 1)
        found = []
        async with self._redis.pipeline(transaction=False) as pipe:
            for batch_id in ids[:limit]:
                pipe.hgetall(keyspace.batch_job(org_id, batch_id))
            for fields in await pipe.execute():
                if fields and fields.get("kind") == "batch":
                    found.append(to_object(fields))
        return found, len(ids) > limit

    async def move(self, org_id: str, batch_id: str, allowed: tuple[str, ...],
                   fields: Mapping[str, str | int], *, leave: tuple[str, ...] = (),
                   enter: tuple[str, int] | None = None) -> str | None:
        """transition.lua: the status it moved from; '' if it was in none of `allowed`, None if
        there is no such job. `$now` as a value is Redis's time in seconds."""
        member = keyspace.batch_ref(org_id, batch_id)
        job_keys = [keyspace.batch_job(org_id, batch_id), *leave]
        args = [member, orjson.dumps(list(allowed)).decode(), orjson.dumps(dict(fields)).decode()]
        if enter is not None:
            job_keys.append(enter[0])
            args.append(enter[1])
        return await self._transition(keys=job_keys, args=args)

    async def cancel(self, org_id: str, batch_id: str) -> str | None:
        """Stop a validating or running job: no new line starts; the runners finalise it once
        its lines in flight are done. The status it was in ('' if already past stopping)."""
        return await self.move(org_id, batch_id, STOPPABLE,
                               {"status": "cancelling", "cancelling_at": "$now"},
                               leave=(keyspace.BATCH_RUNNABLE, keyspace.BATCH_VALIDATE))

    async def open_jobs(self, limit: int = 500) -> list[tuple[str, BatchObject]]:
        """Every job not yet terminal, whole platform, soonest to expire first (batch
        completions too, as batches of one line): (organisation, batch object)."""
        members = await self._redis.zrange(keyspace.BATCH_OPEN, 0, limit - 1)
        async with self._redis.pipeline(transaction=False) as pipe:
            for member in members:
                pipe.hgetall(keyspace.batch_job(*keyspace.split_batch_ref(member)))
            found = await pipe.execute()
        return [(f.get("org", ""), to_object(f)) for f in found if f]

    async def runners(self, now: float, stale_secs: float = 10.0) -> list[dict]:
        """The batch runners' last heartbeats; those silent for `stale_secs` are dropped."""
        beats = await self._redis.hgetall(keyspace.BATCH_RUNNERS)
        alive, gone = [], []
        for runner_id, raw in beats.items():
            beat = {"id": runner_id, **orjson.loads(raw)}
            (alive if now - beat.get("seen_at", 0) <= stale_secs else gone).append(beat)
        if gone:
            await self._redis.hdel(keyspace.BATCH_RUNNERS, *(b["id"] for b in gone))
        return sorted(alive, key=lambda b: b["id"])

    async def delete_org(self, org_id: str) -> None:
        """A deleted organisation's jobs: cancelled first (the runners drop their leases), then
        forgotten; their files go with the organisation's files."""
        ids = await self._redis.zrange(keyspace.batch_index(org_id), 0, -1)
        for batch_id in ids:
            await self.cancel(org_id, batch_id)
        async with self._redis.pipeline(transaction=True) as pipe:
            for batch_id in ids:
                member = keyspace.batch_ref(org_id, batch_id)
                pipe.zrem(keyspace.BATCH_OPEN, member)
                pipe.zrem(keyspace.BATCH_FINALISING, member)
                pipe.delete(keyspace.batch_job(org_id, batch_id), keyspace.batch_attempts(org_id, batch_id),
                            keyspace.batch_done(org_id, batch_id), keyspace.batch_winners(org_id, batch_id))
            pipe.delete(keyspace.batch_index(org_id))
            await pipe.execute()


def to_object(f: Mapping[str, str]) -> BatchObject:
    """The API's batch object from a job's hash."""
    n = {name: int(f.get(name) or 0) for name in _COUNTS}
    errors = f.get("errors")
    return BatchObject(
        id=f["id"], endpoint=f["endpoint"], model=f.get("model") or None,
        errors=BatchErrors.model_validate_json(errors) if errors else None,
        input_file_id=f.get("input_file_id", ""), status=f["status"],
        output_file_id=f.get("output_file_id") or None,
        error_file_id=f.get("error_file_id") or None,
        **{name: int(f[name]) if f.get(name) else None for name in _TIMES},
        request_counts=RequestCounts(total=n["total"], completed=n["completed"],
                                     failed=n["failed"]),
        usage=BatchUsage(input_tokens=n["in_tok"], output_tokens=n["out_tok"],
                         total_tokens=n["in_tok"] + n["out_tok"],
                         input_tokens_details=InputDetails(cached_tokens=n["cached_tok"]),
                         output_tokens_details=OutputDetails(reasoning_tokens=n["reasoning_tok"])),
        metadata=orjson.loads(f["metadata"]) if f.get("metadata") else None,
        priority=int(f.get("priority") or 0), running=max(0, int(f.get("inflight") or 0)))
