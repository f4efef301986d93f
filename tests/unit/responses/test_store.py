"""Stored responses in a real redis-server: kept per organisation with their conversation and
a TTL, refused over the size bound, deleted once."""

from __future__ import annotations

import asyncio

import pytest
from redis.asyncio import Redis

from llmgw.keyspace import stored_response
from llmgw.responses.store import ResponseStore, StoredResponse, TooLarge

STORED = StoredResponse({"id": "resp_1", "object": "response", "output": [{"type": "message"}]},
                        [{"role": "user", "content": "hi"}, {"type": "message", "content": "é"}])


def run(port: int, scenario, max_bytes: int = 10_000):
    async def go():
        async with Redis(port=port, decode_responses=True) as redis:
            await redis.flushall()
            return await scenario(ResponseStore(redis, ttl_secs=300, max_bytes=max_bytes), redis)
    return asyncio.run(go())


def test_a_stored_response_comes_back_whole_for_its_organisation_only(redis_port):
    async def scenario(store, redis):
        await store.put("org_a", STORED)
        return (await store.get("org_a", "resp_1"), await store.get("org_b", "resp_1"),
                await redis.ttl(stored_response("org_a", "resp_1")))
    found, elsewhere, ttl = run(redis_port, scenario)
    assert found == STORED and elsewhere is None
    assert 290 < ttl <= 300


def test_a_conversation_over_the_size_bound_is_not_stored(redis_port):
    async def scenario(store, redis):
        with pytest.raises(TooLarge, match="RESPONSES_MAX_BYTES"):
            await store.put("org_a", STORED)
        return await store.get("org_a", "resp_1")
    assert run(redis_port, scenario, max_bytes=50) is None


def test_delete_says_whether_there_was_one(redis_port):
    async def scenario(store, redis):
        await store.put("org_a", STORED)
        return (await store.delete("org_b", "resp_1"), await store.delete("org_a", "resp_1"),
                await store.delete("org_a", "resp_1"), await store.get("org_a", "resp_1"))
    assert run(redis_port, scenario) == (False, True, False, None)
