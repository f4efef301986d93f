"""The batch work queue's Lua against a real redis-server: order (priority within an
organisation, fairness across them), leases that run out run again under a new attempt, only
the attempt holding a line records it, lines given back wait, paused organisations and busy
models are skipped, a cancelled job's leases are dropped."""

from __future__ import annotations

import asyncio
import time

import pytest
from redis.asyncio import Redis

from llmgw import keyspace
from llmgw.batches.jobs import JobStore
from llmgw.batches.queue import WorkQueue


@pytest.fixture
def redis(redis_port):
    return redis_port


async def _job(jobs: JobStore, org: str, batch_id: str, total: int, priority: int = 0,
               model: str = "m") -> None:
    now = int(time.time())
    await jobs.create(org, batch_id, {"id": batch_id, "kind": "batch", "status": "in_progress",
                                      "created_at": now, "expires_at": now + 86400,
                                      "endpoint": "/v1/chat/completions", "total": total,
                                      "priority": priority, "model": model}, runnable=True)


def run(port: int, scenario):
    """The scenario against a flushed Redis, with (jobs, queue[, redis])."""
    async def go():
        async with Redis(port=port, decode_responses=True) as redis:
            await redis.flushall()
            jobs, queue = JobStore(redis, time.time), WorkQueue(redis, lease_ms=200)
            if scenario.__code__.co_argcount == 3:
                return await scenario(jobs, queue, redis)
            return await scenario(jobs, queue)
    return asyncio.run(go())


def test_priority_orders_an_organisations_jobs(redis):
    async def scenario(jobs, queue):
        await _job(jobs, "org_a", "batch_1", 2, priority=5)
        await _job(jobs, "org_a", "batch_2", 2, priority=-5)
        return [(c.batch_id, c.line) for c in [await queue.claim() for _ in range(5)] if c]
    assert run(redis, scenario) == [("batch_2", 0), ("batch_2", 1), ("batch_1", 0),
                                    ("batch_1", 1)]


def test_organisations_share_fairly_whatever_their_sizes(redis):
    async def scenario(jobs, queue):
        await _job(jobs, "org_big", "batch_1", 1000)
        await _job(jobs, "org_small", "batch_2", 3)
        return [(await queue.claim()).org_id for _ in range(8)]
    order = run(redis, scenario)
    assert order[:6].count("org_small") == 3  # its 3 lines go within the first 6 claims
    assert order[6:] == ["org_big", "org_big"]


def test_a_lapsed_lease_runs_again_and_only_its_new_attempt_records(redis):
    async def scenario(jobs, queue):
        await _job(jobs, "org_a", "batch_1", 1)
        first = await queue.claim()
        assert await queue.claim() is None  # the only line is leased
        await asyncio.sleep(0.3)            # its runner went quiet past the lease
        second = await queue.claim()
        assert (second.line, second.attempt) == (0, 2)
        assert await queue.done(first, "completed", (1, 1, 0, 0)) == 0  # too late
        assert await queue.done(second, "completed", (1, 1, 0, 0)) == 2  # last line: finalise
        assert await queue.done(second, "completed", (1, 1, 0, 0)) == 0  # once
        fields = await jobs.fields("org_a", "batch_1")
        bitmap, winners = await queue.winners("org_a", "batch_1")
        return fields, bitmap, winners
    fields, bitmap, winners = run(redis, scenario)
    assert fields["status"] == "finalizing" and fields["completed"] == "1"
    assert fields["inflight"] == "0" and fields["in_tok"] == "1"
    assert bitmap == b"\x80" and winners == {0: 2}


def test_a_line_given_back_waits_its_delay(redis):
    async def scenario(jobs, queue):
        await _job(jobs, "org_a", "batch_1", 1)
        claim = await queue.claim()
        assert await queue.release(claim, 150)
        assert await queue.claim() is None
        await asyncio.sleep(0.2)
        return await queue.claim()
    again = run(redis, scenario)
    assert (again.line, again.attempt) == (0, 2)


def test_paused_organisations_and_busy_models_are_skipped(redis):
    async def scenario(jobs, queue):
        await _job(jobs, "org_a", "batch_1", 5, model="chat")
        await _job(jobs, "org_b", "batch_2", 5, model="embed")
        await queue.pause("org_a", 60_000)
        got = [(await queue.claim()).org_id for _ in range(2)]
        assert await queue.claim(skip_models=["embed"]) is None
        return got
    assert run(redis, scenario) == ["org_b", "org_b"]


def test_a_cancelled_jobs_leases_are_dropped_and_nothing_new_starts(redis):
    async def scenario(jobs, queue, redis):
        await _job(jobs, "org_a", "batch_1", 10)
        await queue.claim()
        assert await jobs.cancel("org_a", "batch_1") == "in_progress"
        assert await queue.claim() is None      # nothing new starts
        await asyncio.sleep(0.3)                 # the held line's runner died
        assert await queue.claim() is None      # its lapsed lease is dropped, not run
        return await jobs.fields("org_a", "batch_1"), await redis.hget(keyspace.BATCH_ORGLOAD, "org_a")
    fields, load = run(redis, scenario)
    assert fields["status"] == "cancelling" and fields["inflight"] == "0" and load == "0"
