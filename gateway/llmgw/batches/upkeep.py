"""The upkeep of batch jobs, in every runner: validate new jobs, expire jobs past their window,
and finalise jobs whose lines are all done (or that stop): output and error files written
from the spools, the job completed, cancelled or expired. Each step holds a lease in Redis,
so of several runners one does it, and a runner that dies mid-way leaves it to another."""

from __future__ import annotations

import logging
import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path

import anyio
import orjson
from redis.asyncio import Redis
from redis.exceptions import RedisError

from ..endpoints import BY_NAME
from ..errors import StorageQuotaExceeded
from ..files.protocol import OUTPUT_PURPOSE, FileObject
from ..files.store import FileStore
from ..routing import RoutingTable
from .. import keyspace
from .calls import new_request_id
from .jobs import JobStore
from .protocol import BATCH_ENDPOINTS, BatchErrors
from .queue import WorkQueue
from .spool import Written, batch_dir, finalise
from .validate import Checked, check_file, write_spans

log = logging.getLogger("llmgw.batches.upkeep")
UPKEEP_SECS = 1.0
VALIDATE_LEASE_MS = 600_000   # a 200 MB file takes a while; a runner that dies frees it then
# A finaliser that outlives its lease only costs work: of two, the commit lets one win and the
# other deletes its files. Short, so a finaliser stopped by a Redis error is replaced soon.
FINALISE_LEASE_MS = 120_000


class Upkeep:
    def __init__(self, redis: Redis, jobs: JobStore, queue: WorkQueue, files: FileStore,
                 routing: RoutingTable, root: Path,
                 clock: Callable[[], float] = time.time) -> None:
        self._redis, self._jobs, self._queue, self._files = redis, jobs, queue, files
        self._routing, self._root, self._clock = routing, root, clock

    async def run_forever(self) -> None:
        while True:
            try:
                await self.once()
            except (RedisError, OSError) as exc:
                log.warning("batch upkeep: %s; retrying", exc)
            await anyio.sleep(UPKEEP_SECS)

    async def once(self) -> None:
        while (found := await self._queue.lease_validation(VALIDATE_LEASE_MS)) is not None:
            await self.validate(*found)
        now_ms = self._clock() * 1000
        for member, expires_ms in await self._redis.zrange(keyspace.BATCH_OPEN, 0, -1, withscores=True):
            org_id, batch_id = keyspace.split_batch_ref(member)
            status, inflight = await self._redis.hmget(keyspace.batch_job(org_id, batch_id),
                                                       "status", "inflight")
            if status in ("validating", "in_progress") and now_ms > expires_ms:
                await self._jobs.move(org_id, batch_id, ("validating", "in_progress"),
                                      {"status": "finalizing", "finalizing_at": "$now",
                                       "ending": "expired"},
                                      leave=(keyspace.BATCH_RUNNABLE, keyspace.BATCH_VALIDATE))
            elif status in ("cancelling", "finalizing") and int(inflight or 0) <= 0:
                await self.finalise(org_id, batch_id)
            elif status is None:
                await self._redis.zrem(keyspace.BATCH_OPEN, member)  # its organisation was deleted

    async def validate(self, org_id: str, batch_id: str) -> None:
        fields = await self._jobs.fields(org_id, batch_id)
        if fields is None or fields.get("status") != "validating":
            await self._redis.zrem(keyspace.BATCH_VALIDATE, keyspace.batch_ref(org_id, batch_id))
            return
        folder = batch_dir(self._root, org_id, batch_id)
        url = fields["endpoint"]
        checked = await anyio.to_thread.run_sync(self._check, org_id, fields["input_file_id"],
                                                 folder, url)
        if checked.errors:
            errors = BatchErrors(data=checked.errors).model_dump_json(exclude_none=True)
            await self._jobs.move(org_id, batch_id, ("validating",),
                                  {"status": "failed", "failed_at": "$now", "errors": errors},
                                  leave=(keyspace.BATCH_VALIDATE, keyspace.BATCH_OPEN))
            await anyio.to_thread.run_sync(lambda: shutil.rmtree(folder, ignore_errors=True))
            return
        await anyio.to_thread.run_sync(write_spans, checked.spans, folder / "lines.idx")
        await self._jobs.move(org_id, batch_id, ("validating",),
                              {"status": "in_progress", "in_progress_at": "$now",
                               "total": len(checked.spans) // 2, "model": checked.model},
                              leave=(keyspace.BATCH_VALIDATE,),
                              enter=(keyspace.BATCH_RUNNABLE, int(fields.get("priority") or 0)))

    def _check(self, org_id: str, file_id: str, folder: Path, url: str) -> Checked:
        """The input file, hard-linked into the job's folder first: the client may delete
        the file while the job runs; the job keeps its copy."""
        folder.mkdir(parents=True, exist_ok=True)
        kept = folder / "input.jsonl"
        if not kept.exists():
            try:
                os.link(self._files.content_path(org_id, file_id), kept)
            except (FileNotFoundError, ValueError):
                checked = Checked()
                checked.refuse("file_not_found", f"input file {file_id[:64]} no longer exists",
                               None, "input_file_id")
                return checked
        return check_file(kept, url, BY_NAME[BATCH_ENDPOINTS[url]], self._routing)

    async def finalise(self, org_id: str, batch_id: str) -> None:
        if not await self._queue.lease_finalising(org_id, batch_id, FINALISE_LEASE_MS):
            return  # another runner is at it
        try:
            await self._finalise(org_id, batch_id)
        except BaseException:
            with anyio.CancelScope(shield=True):
                try:  # let another runner (or the next upkeep) take it at once
                    await self._redis.zrem(keyspace.BATCH_FINALISING, keyspace.batch_ref(org_id, batch_id))
                except (RedisError, OSError):
                    pass  # the lease lapses by itself
            raise

    async def _finalise(self, org_id: str, batch_id: str) -> None:
        fields = await self._jobs.fields(org_id, batch_id)
        status = None if fields is None else fields.get("status")
        if status not in ("cancelling", "finalizing") or int(fields.get("inflight") or 0) > 0:
            await self._redis.zrem(keyspace.BATCH_FINALISING, keyspace.batch_ref(org_id, batch_id))
            return
        ending = "cancelled" if status == "cancelling" else fields.get("ending") or "completed"
        folder = batch_dir(self._root, org_id, batch_id)
        bitmap, winners = await self._queue.winners(org_id, batch_id)
        partial = self._root / "files" / ".partial"
        written = await anyio.to_thread.run_sync(
            finalise, folder, int(fields.get("total") or 0), bitmap, winners, ending, partial,
            new_request_id)
        await self._commit(org_id, batch_id, fields, ending, written)

    async def _commit(self, org_id: str, batch_id: str, fields: dict[str, str], ending: str,
                      written: Written) -> None:
        expiry = int(fields.get("output_expires") or 0) or None
        added: list[str] = []
        try:
            for path, kind in ((written.output, "output"), (written.errors, "error")):
                if path is not None:
                    added.append(await self._add_file(org_id, batch_id, path, kind, expiry))
                else:
                    added.append("")
        except StorageQuotaExceeded as exc:
            for file_id in added:
                if file_id:
                    await self._files.delete(org_id, file_id)
            errors = orjson.dumps({"object": "list", "data": [
                {"code": "output_storage_quota_exceeded", "message": exc.message}]}).decode()
            added, ending = ["", ""], "failed"
            fields_extra = {"errors": errors}
        else:
            fields_extra = {}
        moved = await self._jobs.move(
            org_id, batch_id, ("cancelling", "finalizing"),
            {"status": ending, f"{ending}_at": "$now", "output_file_id": added[0],
             "error_file_id": added[1], **fields_extra},
            leave=(keyspace.BATCH_OPEN, keyspace.BATCH_FINALISING))
        if not moved:  # finalised meanwhile by a runner whose lease we outlived
            for file_id in added:
                if file_id:
                    await self._files.delete(org_id, file_id)
            return
        await self._redis.delete(keyspace.batch_attempts(org_id, batch_id), keyspace.batch_done(org_id, batch_id),
                                 keyspace.batch_winners(org_id, batch_id))
        folder = batch_dir(self._root, org_id, batch_id)
        await anyio.to_thread.run_sync(lambda: shutil.rmtree(folder, ignore_errors=True))

    async def _add_file(self, org_id: str, batch_id: str, path: Path, kind: str,
                        expiry: int | None) -> str:
        created = int(self._files.now())
        file = FileObject(id=self._files.new_id(), bytes=path.stat().st_size, created_at=created,
                          expires_at=created + expiry if expiry else None,
                          filename=f"{batch_id}_{kind}.jsonl", purpose=OUTPUT_PURPOSE)
        try:
            await self._files.add(org_id, file, path)
        finally:
            path.unlink(missing_ok=True)
        return file.id
