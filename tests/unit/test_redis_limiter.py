"""admit.lua against a real redis-server: the room it reports, and final admissions (cache
hits) that take no lease, bill exactly what they reserve and count their usage at once."""

from __future__ import annotations

import asyncio

import pytest
from redis.asyncio import Redis

from llmgw.admission.redis_channel import RedisChannel
from llmgw.admission.redis_limiter import GLOBAL_CONCURRENCY, RedisLimiter, scopes_for, usage_prefix
from llmgw.tenancy.limits import Limits
from redis_server import start_redis

WIDE = dict(rps=10**5, burst=10**6, rpm_limit=10**7, tpm_limit=10**10, max_concurrent=10**5,
            daily_token_limit=10**12, daily_request_limit=10**9, monthly_token_limit=10**12)


@pytest.fixture(scope="module")
def redis_port():
    proc, port = start_redis()
    yield port
    proc.terminate()
    proc.wait()


def _run(port: int, scenario):
    async def main():
        redis = Redis(port=port, decode_responses=True)
        channel = RedisChannel(f"redis://127.0.0.1:{port}/0", 2.0)
        limiter = RedisLimiter(redis, channel, lease_ms=30_000, global_max_concurrent=1000,
                               usage_retention_secs=3600)
        try:
            return await scenario(limiter, redis)
        finally:
            await channel.aclose()
            await redis.aclose()
    return asyncio.run(main())


@pytest.mark.parametrize("limits,room", [({"rpm_limit": 100}, 98), ({"max_concurrent": 10}, 8),
                                         ({"daily_request_limit": 50}, 48),
                                         ({"tpm_limit": 10_000}, 10_000 // 300 - 2)])
def test_room_is_the_tightest_limits_spare_capacity(redis_port, limits, room):
    org = f"org_room_{next(iter(limits))}"

    async def scenario(limiter, redis):
        scopes = scopes_for(org, Limits(**{**WIDE, **limits}), "k", Limits())
        await limiter.admit("r1", scopes, 300, 0)
        return (await limiter.admit("r2", scopes, 300, 0)).room
    assert _run(redis_port, scenario) == room


def test_a_final_admission_takes_no_lease_and_counts_its_usage(redis_port):
    org = "org_final"

    async def scenario(limiter, redis):
        scopes = scopes_for(org, Limits(**WIDE), "k", Limits())
        usage = {"k|m|chat|requests": 1, "k|m|chat|cache_hits": 1, "k|m|chat|prompt_tokens": 7}
        verdict = await limiter.admit("hit1", scopes, 7, 0, (usage_prefix(org), usage))
        leases = (await redis.zcard(scopes[0].leases), await redis.zscore(GLOBAL_CONCURRENCY, "hit1"))
        quota = await redis.hgetall(f"llmgw:q:{{{org}}}:d:{verdict.day}")
        buckets = [await redis.hgetall(k) for k in sorted(await redis.keys(usage_prefix(org) + "*"))]
        none_billed = await limiter.admit("hit2", scopes, 0, 0, (usage_prefix(org), usage))
        tpm_entries = await redis.zrange(scopes[0].prefix + "tpm", 0, -1)
        return verdict, leases, quota, buckets, none_billed, tpm_entries
    verdict, leases, quota, buckets, none_billed, tpm_entries = _run(redis_port, scenario)
    assert verdict.admitted and none_billed.admitted
    assert leases == (0, None)  # neither the organisation's lease set nor the global one has it
    assert quota == {"req": "1", "tok": "7"}  # exactly what it billed; nothing to settle
    assert len(buckets) == 2 and all(b == {"k|m|chat|requests": "1", "k|m|chat|cache_hits": "1",
                                           "k|m|chat|prompt_tokens": "7"} for b in buckets)
    assert tpm_entries == ["hit1"]  # a hit that bills no tokens leaves no weight in the tpm log
