"""files/store.py against a real Redis and a temporary DATA_DIR: pages in creation order past
expired files, the storage quota, delete, and the sweep of leftovers."""

from __future__ import annotations

import asyncio
import os
import time

import pytest
from redis.asyncio import Redis

from llmgw.errors import StorageQuotaExceeded
from llmgw.files.protocol import FileObject
from llmgw.files.store import FileStore, new_file_id


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


def _run(redis_port, scenario):
    async def main():
        redis = Redis(port=redis_port, decode_responses=True)
        try:
            await redis.flushdb()
            await scenario(redis)
        finally:
            await redis.aclose()
    asyncio.run(main())


async def _add(store: FileStore, clock: Clock, org: str, data: bytes, **kw) -> FileObject:
    file_id = store.new_id()
    clock.now += 0.001  # ids are ordered by the millisecond
    store.partial_path(file_id).write_bytes(data)
    file = FileObject(id=file_id, bytes=len(data), created_at=int(clock.now), filename="f",
                      purpose="batch", **kw)
    await store.add(org, file, store.partial_path(file_id))
    return file


def test_pages_follow_creation_order_and_skip_expired_files(redis_port, tmp_path):
    FileStore.prepare(tmp_path)
    clock = Clock()
    store = FileStore(None, tmp_path, org_max_bytes=10**9, clock=clock)

    async def scenario(redis):
        store._redis = redis
        files = [await _add(store, clock, "org_aa", b"x") for _ in range(5)]
        await redis.delete("llmgw:file:{org_aa}:" + files[2].id)  # as if it expired
        page, more = await store.page("org_aa", limit=2, descending=False, after=None, purpose=None)
        assert [f.id for f in page] == [files[0].id, files[1].id] and more
        page, more = await store.page("org_aa", limit=2, descending=False, after=files[1].id,
                                      purpose=None)
        assert [f.id for f in page] == [files[3].id, files[4].id] and not more
        page, _ = await store.page("org_aa", limit=10, descending=True, after=None, purpose=None)
        assert [f.id for f in page] == [files[4].id, files[3].id, files[1].id, files[0].id]
        assert files[2].id not in await redis.zrange("llmgw:files:{org_aa}", 0, -1)
        assert await store.page("org_bb", limit=10, descending=True, after=None, purpose=None) \
            == ([], False)
    _run(redis_port, scenario)


def test_the_quota_counts_stored_bytes_and_delete_gives_them_back(redis_port, tmp_path):
    FileStore.prepare(tmp_path)
    clock = Clock()
    store = FileStore(None, tmp_path, org_max_bytes=10, clock=clock)

    async def scenario(redis):
        store._redis = redis
        first = await _add(store, clock, "org_aa", b"123456")
        with pytest.raises(StorageQuotaExceeded):
            await _add(store, clock, "org_aa", b"12345")
        assert await redis.get("llmgw:filebytes:{org_aa}") == "6"
        assert [p.name for p in (tmp_path / "files" / "org_aa").iterdir()] == [first.id]
        await _add(store, clock, "org_bb", b"12345")  # another organisation's own quota
        assert await store.delete("org_aa", first.id)
        assert not await store.delete("org_aa", first.id)
        assert not (tmp_path / "files" / "org_aa" / first.id).exists()
        await _add(store, clock, "org_aa", b"12345")
        assert await redis.get("llmgw:filebytes:{org_aa}") == "5"
    _run(redis_port, scenario)


def test_the_sweep_removes_old_leftovers_only(redis_port, tmp_path):
    FileStore.prepare(tmp_path)
    clock = Clock()
    clock.now = time.time()
    store = FileStore(None, tmp_path, org_max_bytes=10**9, clock=clock)

    async def scenario(redis):
        store._redis = redis
        kept = await _add(store, clock, "org_aa", b"kept")
        orphan = tmp_path / "files" / "org_aa" / new_file_id(clock.now)
        orphan.write_bytes(b"no metadata")  # as a crash after the count and the move leaves it
        await redis.incrby("llmgw:filebytes:{org_aa}", len(b"no metadata"))
        partial = store.partial_path(new_file_id(clock.now))
        partial.write_bytes(b"cut short")
        fresh = store.partial_path(new_file_id(clock.now))
        fresh.write_bytes(b"still uploading")
        old = clock.now - 3600
        for path in (orphan, partial, tmp_path / "files" / "org_aa" / kept.id):
            os.utime(path, (old, old))
        expired = await _add(store, clock, "org_aa", b"expired")
        await redis.delete("llmgw:file:{org_aa}:" + expired.id)  # its metadata expired
        os.utime(tmp_path / "files" / "org_aa" / expired.id, (old, old))
        assert int(await redis.get("llmgw:filebytes:{org_aa}")) == len(b"kept no metadata expired") - 2
        assert await store.sweep(600) == 3
        assert not orphan.exists() and not partial.exists() and fresh.exists()
        assert (tmp_path / "files" / "org_aa" / kept.id).read_bytes() == b"kept"
        # The orphan's and the expired file's bytes left the count, the expired one's index entry went.
        assert await redis.get("llmgw:filebytes:{org_aa}") == str(len(b"kept"))
        assert await redis.zrange("llmgw:files:{org_aa}", 0, -1) == [kept.id]
        assert await store.sweep(600) == 0  # a second sweeper finds nothing left to count
    _run(redis_port, scenario)


def test_content_paths_never_leave_the_data_dir(tmp_path):
    store = FileStore(None, tmp_path, org_max_bytes=1)
    for org, file_id in (("org_aa", "../../etc"), ("..", new_file_id(0)), ("org_aa/..", "x")):
        with pytest.raises(ValueError):
            store.content_path(org, file_id)


def test_a_data_dir_that_cannot_be_written_stops_start_up(tmp_path):
    (tmp_path / "plain").write_text("a file, not a directory")
    with pytest.raises(SystemExit, match="cannot hold files"):
        FileStore.prepare(tmp_path / "plain")
