"""Batch jobs in a real redis-server: ids in creation order, a new job in the right sets, reads
that refuse what is not a batch, pages newest first, status changes only from the statuses
allowed, runners' heartbeats that go stale, an organisation's jobs forgotten, and the API
object built from a job's hash."""

from __future__ import annotations

import asyncio
import time

import orjson
import pytest
from redis.asyncio import Redis

from llmgw import keyspace
from llmgw.batches.jobs import JobStore, new_batch_id, to_object


def run(port: int, scenario):
    """The scenario against a flushed Redis, with (jobs, redis)."""
    async def go():
        async with Redis(port=port, decode_responses=True) as redis:
            await redis.flushall()
            return await scenario(JobStore(redis, time.time), redis)
    return asyncio.run(go())


def _fields(batch_id: str, **extra) -> dict:
    now = int(time.time())
    return {"id": batch_id, "kind": "batch", "status": "validating", "created_at": now,
            "expires_at": now + 86400, "endpoint": "/v1/chat/completions",
            "input_file_id": "file-1", **extra}


def test_batch_ids_sort_in_creation_order():
    first, second = new_batch_id(1_700_000_000.000), new_batch_id(1_700_000_000.001)
    assert first.startswith("batch_") and len(first) == len("batch_") + 12 + 16
    assert int(first[6:18], 16) == 1_700_000_000_000
    assert first < second and new_batch_id(5.0) != new_batch_id(5.0)  # random tail


def test_a_new_job_waits_for_validation_or_runs_at_once(redis_port):
    async def scenario(jobs, redis):
        await jobs.create("org_a", "batch_v", _fields("batch_v"), runnable=False)
        await jobs.create("org_a", "batch_r", _fields("batch_r", status="in_progress", priority=5),
                          runnable=True)
        return (await redis.zrange(keyspace.BATCH_VALIDATE, 0, -1),
                await redis.zrange(keyspace.BATCH_RUNNABLE, 0, -1, withscores=True),
                await redis.zrange(keyspace.BATCH_OPEN, 0, -1),
                await redis.zrange(keyspace.batch_index("org_a"), 0, -1),
                await jobs.get("org_a", "batch_r"), await jobs.get("org_b", "batch_r"))
    validate, runnable, open_, index, found, elsewhere = run(redis_port, scenario)
    assert validate == [keyspace.batch_ref("org_a", "batch_v")]
    assert runnable == [(keyspace.batch_ref("org_a", "batch_r"), 5.0)]
    assert sorted(open_) == sorted(keyspace.batch_ref("org_a", b) for b in ("batch_v", "batch_r"))
    assert index == ["batch_r", "batch_v"]
    assert found.id == "batch_r" and found.status == "in_progress" and found.priority == 5
    assert elsewhere is None  # another organisation's job is not found


@pytest.mark.parametrize("batch_id", ["file-1", "batch_" + "0" * 60, "batch_a:b", "batch_c"])
def test_get_refuses_ids_that_are_not_this_orgs_batches(redis_port, batch_id):
    async def scenario(jobs, redis):
        # batch_c is a batch completion's job (kind "completion"): not a /v1/batches object
        await jobs.create("org_a", "batch_c", _fields("batch_c", kind="completion"), runnable=True)
        return await jobs.get("org_a", batch_id)
    assert run(redis_port, scenario) is None


def test_pages_are_newest_first_with_a_cursor(redis_port):
    async def scenario(jobs, redis):
        ids = [new_batch_id(1_700_000_000 + i) for i in range(5)]
        for batch_id in ids:
            await jobs.create("org_a", batch_id, _fields(batch_id), runnable=False)
        first, more = await jobs.page("org_a", limit=2, after=None)
        second, more2 = await jobs.page("org_a", limit=2, after=first[-1].id)
        last, more3 = await jobs.page("org_a", limit=2, after=second[-1].id)
        return ids, [b.id for b in first], more, [b.id for b in second], more2, [b.id for b in last], more3
    ids, first, more, second, more2, last, more3 = run(redis_port, scenario)
    assert first == ids[:2:-1][:2] == [ids[4], ids[3]] and more
    assert second == [ids[2], ids[1]] and more2
    assert last == [ids[0]] and not more3


def test_a_status_moves_only_from_the_allowed_ones(redis_port):
    async def scenario(jobs, redis):
        await jobs.create("org_a", "batch_1", _fields("batch_1", status="in_progress"), runnable=True)
        before = time.time()
        was = await jobs.cancel("org_a", "batch_1")
        fields = await jobs.fields("org_a", "batch_1")
        runnable = await redis.zrange(keyspace.BATCH_RUNNABLE, 0, -1)
        again = await jobs.cancel("org_a", "batch_1")  # cancelling is past stopping
        missing = await jobs.cancel("org_a", "batch_nope")
        moved = await jobs.move("org_a", "batch_1", ("cancelling",), {"status": "cancelled"},
                                enter=("test:done", 7))
        return before, was, fields, runnable, again, missing, moved, \
            await redis.zrange("test:done", 0, -1, withscores=True), await jobs.fields("org_a", "batch_1")
    before, was, fields, runnable, again, missing, moved, entered, after = run(redis_port, scenario)
    assert was == "in_progress" and fields["status"] == "cancelling"
    assert abs(int(fields["cancelling_at"]) - before) <= 2  # `$now`: Redis's clock, in seconds
    assert runnable == []  # no new line starts
    assert again == "" and missing is None
    assert moved == "cancelling" and after["status"] == "cancelled"
    assert entered == [(keyspace.batch_ref("org_a", "batch_1"), 7.0)]


def test_open_jobs_are_listed_soonest_to_expire_first(redis_port):
    async def scenario(jobs, redis):
        now = int(time.time())
        await jobs.create("org_a", "batch_late", _fields("batch_late", expires_at=now + 500, org="org_a"),
                          runnable=False)
        await jobs.create("org_b", "batch_soon", _fields("batch_soon", expires_at=now + 100, org="org_b"),
                          runnable=False)
        return await jobs.open_jobs()
    assert [(org, b.id) for org, b in run(redis_port, scenario)] == [
        ("org_b", "batch_soon"), ("org_a", "batch_late")]


def test_runners_silent_too_long_are_dropped(redis_port):
    async def scenario(jobs, redis):
        await redis.hset(keyspace.BATCH_RUNNERS, mapping={
            "r2": orjson.dumps({"seen_at": 995.0, "lines": 3}).decode(),
            "r1": orjson.dumps({"seen_at": 1000.0}).decode(),
            "old": orjson.dumps({"seen_at": 980.0}).decode()})
        alive = await jobs.runners(1000.0, stale_secs=10.0)
        return alive, sorted(await redis.hkeys(keyspace.BATCH_RUNNERS))
    alive, left = run(redis_port, scenario)
    assert alive == [{"id": "r1", "seen_at": 1000.0}, {"id": "r2", "seen_at": 995.0, "lines": 3}]
    assert left == ["r1", "r2"]  # the stale heartbeat is removed


def test_a_deleted_organisations_jobs_are_forgotten(redis_port):
    async def scenario(jobs, redis):
        await jobs.create("org_a", "batch_1", _fields("batch_1", status="in_progress"), runnable=True)
        await jobs.create("org_b", "batch_2", _fields("batch_2"), runnable=False)
        await jobs.delete_org("org_a")
        return (await jobs.fields("org_a", "batch_1"), await redis.exists(keyspace.batch_index("org_a")),
                await redis.zrange(keyspace.BATCH_OPEN, 0, -1), await redis.zrange(keyspace.BATCH_RUNNABLE, 0, -1),
                await jobs.get("org_b", "batch_2"))
    gone, index, open_, runnable, other = run(redis_port, scenario)
    assert gone is None and index == 0 and runnable == []
    assert open_ == [keyspace.batch_ref("org_b", "batch_2")]
    assert other is not None and other.status == "validating"


def test_the_api_object_from_a_jobs_hash():
    batch = to_object({
        "id": "batch_1", "endpoint": "/v1/chat/completions", "model": "", "status": "in_progress",
        "input_file_id": "file-1", "created_at": "100", "in_progress_at": "101", "completed_at": "",
        "total": "10", "completed": "4", "failed": "1", "in_tok": "30", "out_tok": "12",
        "cached_tok": "8", "reasoning_tok": "2", "metadata": '{"k": "v"}', "inflight": "-1",
        "errors": '{"object": "list", "data": [{"code": "c", "message": "m", "line": 3}]}'})
    assert batch.model is None and batch.output_file_id is None
    assert (batch.created_at, batch.in_progress_at, batch.completed_at) == (100, 101, None)
    assert batch.request_counts.model_dump() == {"total": 10, "completed": 4, "failed": 1}
    assert batch.usage.model_dump() == {
        "input_tokens": 30, "input_tokens_details": {"cached_tokens": 8}, "output_tokens": 12,
        "output_tokens_details": {"reasoning_tokens": 2}, "total_tokens": 42}
    assert batch.metadata == {"k": "v"} and batch.priority == 0
    assert batch.running == 0  # a count gone below zero reads as none
    assert batch.errors.data[0].line == 3
