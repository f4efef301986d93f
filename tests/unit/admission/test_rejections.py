"""An organisation's latest refusals, against a real redis-server: one write a second per
worker for each organisation, key and limit, each saying how many refusals it stands for;
newest first, the last 50 kept, in the organisation's hash slot."""

from __future__ import annotations

import asyncio

from redis.asyncio import Redis

from llmgw.admission.rejections import REJECTIONS_KEPT, Rejections
from llmgw.keyspace import rejections as rejections_key
from llmgw.background import BackgroundTasks


class Clock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


def test_refusals_are_written_once_a_second_per_kind_and_counted(redis_port):
    async def scenario():
        async with Redis(port=redis_port, decode_responses=True) as redis:
            await redis.flushall()
            tasks, clock = BackgroundTasks(), Clock()
            rejections = Rejections(redis, tasks, clock)
            for _ in range(5):                        # a burst: one write, four counted
                rejections.note("org_a", "k1", "limit_rpm", 3)
            rejections.note("org_a", "k2", "limit_rpm", 3)   # another key: its own write
            rejections.note("org_b", "k9", "quota_daily_tokens", 3600)
            clock.now += 1.0
            rejections.note("org_a", "k1", "limit_rpm", 2)   # a second later: 1 + the 4 held
            await tasks.wait()
            rows = await rejections.recent("org_a")
            assert [(r["key_id"], r["refusals"], r["retry_after_secs"]) for r in rows] == [
                ("k1", 5, 2), ("k2", 1, 3), ("k1", 1, 3)]
            assert rows[0]["at"] == 1_001.0 and rows[0]["code"] == "limit_rpm"
            assert [r["code"] for r in await rejections.recent("org_b")] == ["quota_daily_tokens"]
            assert "{org_a}" in rejections_key("org_a")
            assert await redis.ttl(rejections_key("org_a")) > 0
            for i in range(REJECTIONS_KEPT + 10):
                clock.now += 1.0
                rejections.note("org_a", "k1", "limit_rpm", 1)
            await tasks.wait()
            assert len(await rejections.recent("org_a")) == REJECTIONS_KEPT
    asyncio.run(scenario())


def test_a_redis_that_is_away_loses_the_note_and_nothing_else():
    async def scenario():
        async with Redis(port=1, socket_connect_timeout=0.2) as redis:
            tasks = BackgroundTasks()
            Rejections(redis, tasks, Clock()).note("org_a", "k1", "limit_rpm", 1)
            await tasks.wait()  # the write failed quietly
    asyncio.run(scenario())
