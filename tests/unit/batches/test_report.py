"""The batch metrics read from a real redis-server: lines by organisation and state, jobs by
status, live runners, lines in flight and their share of the backends' slots."""

from __future__ import annotations

import asyncio
import time

import orjson
from redis.asyncio import Redis

from llmgw import keyspace
from llmgw.batches.jobs import JobStore
from llmgw.batches.report import exposition


def _scrape(port: int, *, capacity: int, tenant_labels: bool) -> dict[str, float]:
    async def go():
        async with Redis(port=port, decode_responses=True) as redis:
            await redis.flushall()
            jobs = JobStore(redis, time.time)
            now = int(time.time())
            for org, batch_id, status, counts in (
                    ("org_a", "batch_1", "in_progress", {"total": 10, "completed": 3, "failed": 1, "inflight": 2}),
                    ("org_a", "batch_2", "validating", {"total": 4}),
                    ("org_b", "batch_3", "in_progress", {"total": 5, "completed": 5})):
                await jobs.create(org, batch_id, {"id": batch_id, "kind": "batch", "org": org,
                                                  "status": status, "created_at": now,
                                                  "expires_at": now + 3600, "endpoint": "/v1/chat/completions",
                                                  **counts}, runnable=False)
            now_ms = int(time.time() * 1000)
            await redis.zadd(keyspace.BATCH_CONCURRENCY, {"lease-1": now_ms + 60_000,
                                                          "lease-2": now_ms + 60_000,
                                                          "lapsed": now_ms - 1000})
            await redis.hset(keyspace.BATCH_RUNNERS, mapping={
                "r1": orjson.dumps({"seen_at": time.time()}).decode(),
                "gone": orjson.dumps({"seen_at": time.time() - 60}).decode()})
            return await exposition(jobs, redis, capacity=capacity, tenant_labels=tenant_labels)
    text = asyncio.run(go()).decode()
    assert text.endswith("\n")
    samples = {}
    for line in text.splitlines():
        if not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            samples[name] = float(value)
    return samples


def test_the_platforms_batch_work_by_organisation(redis_port):
    samples = _scrape(redis_port, capacity=8, tenant_labels=True)
    assert samples == {
        'llmgw_batch_requests{org="org_a",state="completed"}': 3,
        'llmgw_batch_requests{org="org_a",state="failed"}': 1,
        'llmgw_batch_requests{org="org_a",state="queued"}': 4 + 4,  # 10-3-1-2 and the 4 validating
        'llmgw_batch_requests{org="org_a",state="running"}': 2,
        'llmgw_batch_requests{org="org_b",state="completed"}': 5,
        'llmgw_batch_requests{org="org_b",state="failed"}': 0,
        'llmgw_batch_requests{org="org_b",state="queued"}': 0,
        'llmgw_batch_requests{org="org_b",state="running"}': 0,
        'llmgw_batch_jobs{status="in_progress"}': 2,
        'llmgw_batch_jobs{status="validating"}': 1,
        "llmgw_batch_runners": 1,          # the silent one is not counted
        "llmgw_batch_in_flight": 2,        # the lapsed lease is not
        "llmgw_batch_capacity_share": 0.25,
    }


def test_without_tenant_labels_organisations_are_summed_and_no_capacity_is_no_share(redis_port):
    samples = _scrape(redis_port, capacity=0, tenant_labels=False)
    assert samples['llmgw_batch_requests{state="queued"}'] == 8
    assert samples['llmgw_batch_requests{state="completed"}'] == 8
    assert not any("org=" in name for name in samples)
    assert samples["llmgw_batch_capacity_share"] == 0
