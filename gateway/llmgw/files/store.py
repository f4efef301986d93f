"""Where files live: contents on disk under DATA_DIR/files/<org>/<id>, metadata in Redis.

A file becomes visible only whole: its bytes are written to DATA_DIR/files/.partial/, synced,
renamed into the organisation's directory (atomic on one filesystem), and only then is its
metadata written. A crash before the metadata leaves a file nobody can see; `sweep` removes
such leftovers once they are older than any upload could take. Deleting removes the metadata
first, so a file half-deleted is invisible too.

In Redis (keyspace.py names the keys): each file object's JSON, expiring with the file if it
expires; a sorted set of the organisation's file ids, all score 0 (ids start with their
creation time in hex, so lexical order is creation order: cursor pages); the bytes it stores,
against FILES_ORG_MAX_BYTES.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import time
from collections.abc import Callable
from pathlib import Path

import anyio
import orjson
from redis.asyncio import Redis
from redis.exceptions import RedisError

from .. import keyspace
from ..errors import StorageQuotaExceeded
from .protocol import FileObject

FILE_ID = re.compile(r"^file-[0-9a-f]{12}[0-9a-f]{16}$")
_ORG_ID = re.compile(r"^org_[0-9a-f]{1,64}$")
PARTIAL = ".partial"


def new_file_id(now: float) -> str:
    """`file-`, the creation time in milliseconds (12 hex digits), 16 random hex digits."""
    return f"file-{int(now * 1000):012x}{secrets.token_hex(8)}"


class FileStore:
    def __init__(self, redis: Redis, root: Path, *, org_max_bytes: int,
                 clock: Callable[[], float] = time.time) -> None:
        self._redis, self._root, self._org_max = redis, root, org_max_bytes
        self._clock = clock

    @staticmethod
    def prepare(root: Path) -> None:
        """Create DATA_DIR/files and check it can be written; SystemExit if not (start-up)."""
        try:
            (root / "files" / PARTIAL).mkdir(parents=True, exist_ok=True)
            probe = root / "files" / PARTIAL / f".probe-{os.getpid()}"
            probe.write_bytes(b"")
            probe.unlink()
        except OSError as exc:
            raise SystemExit(f"DATA_DIR {root} cannot hold files: {exc}") from None

    def partial_path(self, file_id: str) -> Path:
        return self._root / "files" / PARTIAL / f"{file_id}.part"

    def content_path(self, org_id: str, file_id: str) -> Path:
        if not _ORG_ID.match(org_id) or not FILE_ID.match(file_id):
            raise ValueError("not an organisation and file id")  # never a path outside root
        return self._root / "files" / org_id / file_id

    def now(self) -> float:
        return self._clock()

    def new_id(self) -> str:
        return new_file_id(self._clock())

    async def add(self, org_id: str, file: FileObject, partial: Path) -> None:
        """Move the written file into place and make it visible. StorageQuotaExceeded if the
        organisation's files would exceed FILES_ORG_MAX_BYTES (nothing kept then)."""
        used = await self._redis.incrby(keyspace.file_bytes(org_id), file.bytes)
        if used > self._org_max:
            await self._redis.decrby(keyspace.file_bytes(org_id), file.bytes)
            raise StorageQuotaExceeded(f"the organisation's files would take {used} bytes, "
                                       f"over its {self._org_max}; delete some first",
                                       param="file")
        target = self.content_path(org_id, file.id)
        try:
            await anyio.to_thread.run_sync(_move, partial, target)
            ttl = None if file.expires_at is None else max(1, file.expires_at - int(self._clock()))
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.set(keyspace.file_meta(org_id, file.id), file.model_dump_json(), ex=ttl)
                pipe.zadd(keyspace.file_index(org_id), {file.id: 0})
                await pipe.execute()
        except BaseException:
            await self._redis.decrby(keyspace.file_bytes(org_id), file.bytes)
            target.unlink(missing_ok=True)
            raise

    async def get(self, org_id: str, file_id: str) -> FileObject | None:
        if not FILE_ID.match(file_id):
            return None
        raw = await self._redis.get(keyspace.file_meta(org_id, file_id))
        return None if raw is None else FileObject.model_validate(orjson.loads(raw))

    async def page(self, org_id: str, *, limit: int, descending: bool, after: str | None,
                   purpose: str | None) -> tuple[list[FileObject], bool]:
        """Up to `limit` files after the cursor in creation order, and whether more follow."""
        found: list[FileObject] = []
        cursor = after
        while len(found) <= limit:
            batch = await self._ids(org_id, cursor, descending, limit + 1 - len(found))
            if not batch:
                break
            cursor = batch[-1]
            raws = await self._redis.mget([keyspace.file_meta(org_id, i) for i in batch])
            gone = [i for i, raw in zip(batch, raws) if raw is None]  # expired
            if gone:
                await self._redis.zrem(keyspace.file_index(org_id), *gone)
            for raw in raws:
                if raw is not None:
                    file = FileObject.model_validate(orjson.loads(raw))
                    if purpose is None or file.purpose == purpose:
                        found.append(file)
        return found[:limit], len(found) > limit

    async def _ids(self, org_id: str, after: str | None, descending: bool, count: int) -> list[str]:
        if descending:
            return await self._redis.zrevrangebylex(
                keyspace.file_index(org_id), f"({after}" if after else "+", "-", start=0, num=count)
        return await self._redis.zrangebylex(
            keyspace.file_index(org_id), f"({after}" if after else "-", "+", start=0, num=count)

    async def delete(self, org_id: str, file_id: str) -> bool:
        file = await self.get(org_id, file_id)
        if file is None:
            return False
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.delete(keyspace.file_meta(org_id, file_id))
            pipe.zrem(keyspace.file_index(org_id), file_id)
            deleted, _ = await pipe.execute()
        if not deleted:
            return False  # deleted meanwhile by another request
        await self._redis.decrby(keyspace.file_bytes(org_id), file.bytes)
        self.content_path(org_id, file_id).unlink(missing_ok=True)
        return True

    async def delete_org(self, org_id: str) -> int:
        """Every file of a deleted organisation: metadata, then contents. Returns how many."""
        ids = await self._redis.zrange(keyspace.file_index(org_id), 0, -1)
        async with self._redis.pipeline(transaction=True) as pipe:
            for file_id in ids:
                pipe.delete(keyspace.file_meta(org_id, file_id))
            pipe.delete(keyspace.file_index(org_id), keyspace.file_bytes(org_id))
            await pipe.execute()
        if _ORG_ID.match(org_id):
            folder = self._root / "files" / org_id
            await anyio.to_thread.run_sync(lambda: shutil.rmtree(folder, ignore_errors=True))
        return len(ids)

    async def sweep(self, older_than_secs: float) -> int:
        """Remove partial uploads and contents without metadata (a crash between the two
        steps, an expired file) older than `older_than_secs`; a removed file's bytes leave its
        organisation's count. Returns how many went. Several workers may sweep at once: only
        the one whose unlink removed a file counts it."""
        cutoff, removed = self._clock() - older_than_secs, 0
        files = self._root / "files"
        for entry, size in await anyio.to_thread.run_sync(_old_entries, files, cutoff):
            org_id, name = entry.parent.name, entry.name
            if org_id != PARTIAL and await self._redis.exists(keyspace.file_meta(org_id, name)):
                continue
            try:
                entry.unlink()
            except FileNotFoundError:
                continue
            removed += 1
            if org_id != PARTIAL:  # counted when it was added; expired or never made visible
                async with self._redis.pipeline(transaction=True) as pipe:
                    pipe.decrby(keyspace.file_bytes(org_id), size)
                    pipe.zrem(keyspace.file_index(org_id), name)
                    await pipe.execute()
        return removed


async def sweep_forever(store: FileStore, *, older_than_secs: float, every_secs: float) -> None:
    """Sweep on an interval, from start-up on; cancelled by the lifespan. A failed sweep (Redis
    away, a disk error) waits for the next round: leftovers cost only disk space meanwhile."""
    while True:
        try:
            await store.sweep(older_than_secs)
        except (OSError, RedisError):
            pass
        await anyio.sleep(every_secs)


def _move(partial: Path, target: Path) -> None:
    target.parent.mkdir(exist_ok=True)
    os.rename(partial, target)


def _old_entries(files: Path, cutoff: float) -> list[tuple[Path, int]]:
    old = []
    for folder in files.iterdir() if files.is_dir() else ():
        if not folder.is_dir() or not (folder.name == PARTIAL or _ORG_ID.match(folder.name)):
            continue
        for entry in folder.iterdir():
            try:
                stat = entry.stat()
            except FileNotFoundError:
                continue
            if stat.st_mtime < cutoff:
                old.append((entry, stat.st_size))
    return old
