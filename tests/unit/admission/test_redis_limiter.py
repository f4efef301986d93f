"""admit.lua and settle.lua against a real redis-server: the room admission reports, final
admissions (cache hits) that take no lease, bill exactly what they reserve and count their
usage at once, and keys that always expire but outlive their windows; scripts past their
deadline, and the offset to Redis's clock."""

from __future__ import annotations

import asyncio
import time

import orjson
import pytest
from redis.asyncio import Redis
from redis.exceptions import TimeoutError as RedisTimeoutError

from llmgw.admission.redis_channel import RedisChannel
from llmgw.admission.redis_clock import RedisClock
from llmgw.admission.redis_limiter import RedisLimiter, Reservation, counter_sets
from llmgw.keyspace import GLOBAL_CONCURRENCY, usage_prefix
from llmgw.tenancy.limits import Limits

WIDE = dict(rps=10**5, burst=10**6, rpm_limit=10**7, tpm_limit=10**10, max_concurrent=10**5,
            daily_token_limit=10**12, daily_request_limit=10**9, monthly_token_limit=10**12)


def _run(port: int, scenario, clock: RedisClock | None = None, *, timeout: float = 2.0,
         preload: bool = False):
    """`scenario(limiter, redis)` on a channel not yet connected; `preload`: the scripts are
    in Redis already, so no NOSCRIPT round trip comes between a script and what follows it."""
    async def main():
        redis = Redis(port=port, decode_responses=True)
        channel = RedisChannel(f"redis://127.0.0.1:{port}/0", timeout)
        limiter = RedisLimiter(redis, channel, lease_ms=30_000, global_max_concurrent=1000,
                               usage_retention_secs=3600, clock=clock)
        for script in (limiter._admit, limiter._settle, limiter._unadmit) if preload else ():
            await redis.script_load(script.script)
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
        scopes = counter_sets(org, Limits(**{**WIDE, **limits}), "k", Limits())
        await limiter.admit("r1", scopes, 300, 0)
        return (await limiter.admit("r2", scopes, 300, 0)).room
    assert _run(redis_port, scenario) == room


def test_a_final_admission_takes_no_lease_and_counts_its_usage(redis_port):
    org = "org_final"

    async def scenario(limiter, redis):
        scopes = counter_sets(org, Limits(**WIDE), "k", Limits())
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


def test_every_key_admission_and_settlement_write_expires_and_outlives_its_window(redis_port):
    org = "org_ttl"

    async def scenario(limiter, redis):
        scopes = counter_sets(org, Limits(**WIDE), "k", Limits(rpm_limit=10**6))  # two scopes
        for i in range(3):
            verdict = await limiter.admit(f"r{i}", scopes, 300, 0)
        await limiter.admit("hit", scopes, 0, 0, (usage_prefix(org), {"k|m|chat|requests": 1}))
        await limiter.settle(Reservation("r0", org, scopes, 300, verdict.day, verdict.month,
                                         usage_prefix(org)), 120, {"k|m|chat|requests": 1})
        keys = await redis.keys(f"*{{{org}}}*") + [GLOBAL_CONCURRENCY]
        return {k: await redis.pttl(k) for k in keys}
    ttls = _run(redis_port, scenario)
    assert len(ttls) >= 12 and all(ms > 0 for ms in ttls.values()), ttls  # none lives forever
    windows = {":rpm": 61_000, ":tpm": 61_000, ":tpmw": 61_000, ":rps": 1_000}
    for key, ms in ttls.items():
        for suffix, needed in windows.items():
            if key.endswith(suffix):
                assert ms >= needed, (key, ms)  # still there for the whole window
        if ":q:" in key and ":d:" in key:
            assert 2 * 86400_000 < ms <= 3 * 86400_000, (key, ms)
    assert ttls[GLOBAL_CONCURRENCY] >= 60_000 and ttls[f"llmgw:conc:{{{org}}}"] >= 60_000  # 2 leases


def test_a_hit_billing_no_tokens_passes_exhausted_token_limits_but_not_request_limits(redis_port):
    org = "org_free_hit"

    async def scenario(limiter, redis):
        scopes = counter_sets(org, Limits(**{**WIDE, "daily_token_limit": 1000, "tpm_limit": 1000,
                                           "monthly_token_limit": 1000, "rpm_limit": 3}), "k", Limits())
        first = await limiter.admit("r1", scopes, 1000, 0)  # takes every token limit whole
        again = await limiter.admit("r2", scopes, 10, 0)
        final = (usage_prefix(org), {"k|m|chat|requests": 1})
        hit = await limiter.admit("hit1", scopes, 0, 0, final)
        billed_hit = await limiter.admit("hit2", scopes, 10, 0, final)
        third = await limiter.admit("hit3", scopes, 0, 0, final)
        over_rpm = await limiter.admit("hit4", scopes, 0, 0, final)
        return first, again, hit, billed_hit, third.admitted and over_rpm
    first, again, hit, billed_hit, over_rpm = _run(redis_port, scenario)
    assert first.admitted and (again.admitted, again.code) == (False, "limit_tpm")
    assert hit.admitted and hit.tpm[1] == 0  # remaining tokens never below zero
    assert (billed_hit.admitted, billed_hit.code) == (False, "limit_tpm")  # CACHE_HIT_BILLING=tokens
    assert (over_rpm.admitted, over_rpm.code) == (False, "limit_rpm")  # hits count as requests


class _SkewedWall:
    """A wall clock `skew` seconds away from Redis's (another host's clock)."""

    def __init__(self, skew: float) -> None:
        self.skew = skew

    def __call__(self) -> float:
        return time.time() + self.skew


def test_a_script_past_its_deadline_takes_nothing(redis_port):
    """A script that reaches Redis after its caller gave up (a stall, a resend) must not take a
    lease nobody settles, nor count a request its caller served some other way."""
    org = "org_late"
    scopes = counter_sets(org, Limits(**WIDE), "k", Limits())

    async def scenario(limiter, redis):
        late = RedisLimiter(redis, limiter._channel, lease_ms=30_000, global_max_concurrent=1000,
                            usage_retention_secs=3600)
        args = ["late1", 30_000, 300, 0, 1, 1, *scopes[0].limits, 1000]  # deadline: 1 ms
        keys = [*scopes[0].admit_keys(), GLOBAL_CONCURRENCY]
        reply = await late._scripts.call(late._admit, keys, [orjson.dumps(args)])
        written = await redis.keys("*{" + org + "}*")
        if await redis.zscore(GLOBAL_CONCURRENCY, "late1") is not None:
            written.append(GLOBAL_CONCURRENCY)
        return reply, written
    reply, written = _run(redis_port, scenario)
    assert (reply[0], reply[1]) == (0, b"expired") and reply[15] > 1
    assert written == []


def test_the_offset_to_redis_time_is_learnt_from_replies(redis_port):
    """A worker whose wall clock is 30 s ahead of Redis's (or behind) still admits: its first
    deadline looks past to Redis, that reply (back in time) teaches it the offset, and the
    admission is sent once more; its deadlines are then in Redis's time."""
    for skew in (30.0, -30.0):
        clock = RedisClock(time.monotonic, _SkewedWall(skew))
        scopes = counter_sets(f"org_skew_{skew:+.0f}", Limits(**WIDE), "k", Limits())

        async def scenario(limiter, redis):
            first = await limiter.admit("s1", scopes, 10, 0)
            second = await limiter.admit("s2", scopes, 10, 0)
            return first, second, await redis.zcard(scopes[0].leases)
        first, second, leases = _run(redis_port, scenario, clock)
        assert first.admitted and second.admitted and leases == 2
        assert abs(clock.now_ms() - time.time() * 1000) < 1000  # Redis's clock, not the skewed one


class _Monotonic:
    """A monotonic clock that a test can shift: the same as Redis's clock stepping."""

    def __init__(self) -> None:
        self.shift = 0.0

    def __call__(self) -> float:
        return time.monotonic() + self.shift


def test_a_step_of_redis_clock_after_sync_is_followed(redis_port):
    """Synced, then Redis's clock steps 2 s ahead (seen here as this worker's clock falling
    2 s behind): every deadline now looks past. The expired reply came back in time, so it
    is taken whatever its round trip, and the admission goes through on its second try."""
    mono = _Monotonic()
    clock = RedisClock(mono, time.time)
    scopes = counter_sets("org_step", Limits(**WIDE), "k", Limits())

    async def scenario(limiter, redis):
        before = await limiter.admit("t1", scopes, 10, 0)
        mono.shift = -2.0
        after = await limiter.admit("t2", scopes, 10, 0)
        return before, after, await redis.zcard(scopes[0].leases)
    before, after, leases = _run(redis_port, scenario, clock)
    assert before.admitted and after.admitted and leases == 2
    assert abs(clock.now_ms() - time.time() * 1000) < 100


@pytest.mark.parametrize("final,give_up", [(False, "timeout"), (True, "timeout"),
                                            (False, "cancel")])
def test_a_verdict_that_comes_after_its_caller_gave_up_is_undone(redis_port, final, give_up):
    """Redis ran the admission in time, but its reply came late (a slow command behind it
    held the reply back): the caller had given up (timed out, or its task was cancelled) and
    answered without it, so the lease, the window entries, the quota and (a cache hit's)
    usage it took are given back."""
    org = f"org_undone_{final}_{give_up}"
    limits = Limits(**{**WIDE, "rpm_limit": 100, "tpm_limit": 10**6, "max_concurrent": 10})
    scopes = counter_sets(org, limits, "k", Limits())
    hit = (usage_prefix(org), {"k|m|chat|requests": 1, "k|m|chat|cache_hits": 1}) if final else None

    async def scenario(limiter, redis):
        admit = asyncio.create_task(limiter.admit("slow1", scopes, 300, 0, hit))
        await asyncio.sleep(0)  # queued: it and the next command leave in one write
        limiter._channel.send(("DEBUG", "SLEEP", "0.3"))  # runs after the script, before its reply goes
        if give_up == "cancel":
            await asyncio.sleep(0.05)  # sent, and Redis is asleep behind the script
            admit.cancel()
        with pytest.raises(asyncio.CancelledError if give_up == "cancel" else RedisTimeoutError):
            await admit
        await asyncio.sleep(0.6)  # the late reply arrives and the undo runs
        p = scopes[0].prefix
        state = {"leases": await redis.zcard(scopes[0].leases),
                 "global": await redis.zscore(GLOBAL_CONCURRENCY, "slow1"),
                 "rpm": await redis.zcard(p + "rpm"), "tpm": await redis.zcard(p + "tpm"),
                 "tpm_sum": await redis.hget(p + "tpmw", "__sum")}
        day = await redis.keys(scopes[0].quota_prefix + "d:*")
        state["quota"] = await redis.hgetall(day[0]) if day else None
        usage = await redis.keys(usage_prefix(org) + "*")
        state["usage"] = sorted({v for key in usage for v in (await redis.hgetall(key)).values()})
        return state
    state = _run(redis_port, scenario, timeout=0.1, preload=True)
    assert state == {"leases": 0, "global": None, "rpm": 0, "tpm": 0, "tpm_sum": "0",
                     "quota": {"req": "0", "tok": "0"}, "usage": ["0"] if final else []}, state


async def _state(redis: Redis, scope) -> dict:
    """What one scope holds: leases, window entries, the tpm sum and the day's quota."""
    p = scope.prefix
    days = await redis.keys(scope.quota_prefix + "d:*")
    return {"leases": await redis.zcard(scope.leases), "rpm": await redis.zcard(p + "rpm"),
            "tpm_sum": await redis.hget(p + "tpmw", "__sum"),
            "quota": await redis.hgetall(days[0]) if days else None}


def _lose_connection_while_redis_sleeps(channel: RedisChannel) -> None:
    """Redis has run the command, its reply waits behind a DEBUG SLEEP, and now the connection
    dies (a network fault, a proxy restart): the channel sends the command again on a new one."""
    channel._proto._transport.abort()


@pytest.mark.parametrize("step", ["admit", "settle"])
def test_a_script_resent_after_a_lost_connection_counts_once(redis_port, step):
    """Redis ran the script, the reply was lost with the connection, the channel sent it once
    more: the second run finds what the first did and takes (or gives back) nothing again.
    With max_concurrent 1, a second admission run would also meet its own lease and refuse."""
    org = f"org_resent_{step}"
    limits = Limits(**{**WIDE, "rpm_limit": 100, "tpm_limit": 10**6, "max_concurrent": 1})
    scopes = counter_sets(org, limits, "k", Limits())

    async def scenario(limiter, redis):
        channel = limiter._channel
        await channel.send(("PING",))  # connected: what follows leaves at once
        if step == "settle":
            verdict = await limiter.admit("twice", scopes, 300, 0)
        # Redis is asleep while the script and a second sleep reach it: it wakes, reads both,
        # runs the script and sleeps again before any reply leaves.
        channel.send(("DEBUG", "SLEEP", "0.2"))
        if step == "admit":
            call = asyncio.create_task(limiter.admit("twice", scopes, 300, 0))
        else:
            call = asyncio.create_task(limiter.settle(Reservation(
                "twice", org, scopes, 300, verdict.day, verdict.month, usage_prefix(org)),
                120, {"k|m|chat|requests": 1}))
        await asyncio.sleep(0.05)
        channel.send(("DEBUG", "SLEEP", "0.3"))
        await asyncio.sleep(0.25)
        _lose_connection_while_redis_sleeps(channel)
        return await call, await _state(redis, scopes[0])
    result, state = _run(redis_port, scenario, preload=True)
    if step == "admit":
        assert (result.admitted, result.code) == (True, ""), result
        assert state == {"leases": 1, "rpm": 1, "tpm_sum": "300",
                         "quota": {"req": "1", "tok": "300"}}, state
    else:
        assert state == {"leases": 0, "rpm": 1, "tpm_sum": "120",
                         "quota": {"req": "1", "tok": "120"}}, state


def test_a_verdict_lost_with_its_connection_after_its_caller_gave_up_is_undone(redis_port):
    """The caller timed out, then the connection died before the late reply came: the channel
    sends the admission again only to learn its verdict, and undoes what the first run took."""
    org = "org_lost_late"
    scopes = counter_sets(org, Limits(**{**WIDE, "rpm_limit": 100, "max_concurrent": 10}), "k",
                        Limits())

    async def scenario(limiter, redis):
        admit = asyncio.create_task(limiter.admit("lost", scopes, 300, 0))
        await asyncio.sleep(0)  # queued: it and the sleep leave in one write once connected
        limiter._channel.send(("DEBUG", "SLEEP", "0.4"))
        with pytest.raises(RedisTimeoutError):
            await admit
        _lose_connection_while_redis_sleeps(limiter._channel)
        await asyncio.sleep(0.8)  # reconnect, the verdict again, the undo
        return await _state(redis, scopes[0])
    state = _run(redis_port, scenario, timeout=0.1, preload=True)
    assert state == {"leases": 0, "rpm": 0, "tpm_sum": "0", "quota": {"req": "0", "tok": "0"}}, state
