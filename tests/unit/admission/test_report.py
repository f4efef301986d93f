"""The admin API's usage and quota reports, read back from a real redis-server after the real
limiter scripts wrote them: totals and breakdowns by window, each key's day, a series of
buckets, and every limit's configured, used and remaining values with its reset."""

from __future__ import annotations

import asyncio
import time
from datetime import datetime
from zoneinfo import ZoneInfo

from redis.asyncio import Redis

from llmgw.admission.redis_channel import RedisChannel
from llmgw.admission.redis_limiter import RedisLimiter, counter_sets
from llmgw.admission.report import UsageReport
from llmgw.admission.windows import HOUR, hour
from llmgw.keyspace import usage_prefix
from llmgw.tenancy.limits import Limits
from llmgw.tenancy.records import Org

USAGE = {"k1|m1|chat|requests": 2, "k1|m1|chat|success": 1, "k1|m1|chat|error_limit_rpm": 1,
         "k1|m1|chat|prompt_tokens": 10, "k1|m1|chat|completion_tokens": 4,
         "k2|m2|embeddings|requests": 3, "k2|m2|embeddings|success": 3,
         "k2|m2|embeddings|prompt_tokens": 5}


def _org(org_id: str, **fields) -> Org:
    return Org(id=org_id, name=org_id, created_at=time.time(), updated_at=time.time(), **fields)


def _run(port: int, scenario, defaults: Limits = Limits()):
    async def main():
        redis = Redis(port=port, decode_responses=True)
        channel = RedisChannel(f"redis://127.0.0.1:{port}/0", 2.0)
        limiter = RedisLimiter(redis, channel, lease_ms=30_000, global_max_concurrent=1000,
                               usage_retention_secs=3600)
        try:
            return await scenario(limiter, UsageReport(redis, defaults), redis)
        finally:
            await channel.aclose()
            await redis.aclose()
    return asyncio.run(main())


async def _count(limiter: RedisLimiter, org: Org, usage: dict[str, int]) -> None:
    """Usage counted as the limiter counts a cache hit's: at once, into the hour and the day."""
    scopes = counter_sets(org.id, Limits(), "k1", Limits())
    verdict = await limiter.admit(f"u-{time.monotonic_ns()}", scopes, 0, 0,
                                  (usage_prefix(org.id), usage))
    assert verdict.admitted


def test_usage_totals_and_breakdowns_by_window(redis_port):
    org = _org("org_report_usage")

    async def scenario(limiter, report, redis):
        await _count(limiter, org, USAGE)
        now = int((await redis.time())[0])
        return now, await report.usage([org], "1h"), await report.usage([org], "7d")
    now, last_hour, week = _run(redis_port, scenario)
    row = last_hour["orgs"][0]
    assert (row["org_id"], row["name"]) == (org.id, org.name)
    assert (row["requests"], row["success"], row["prompt_tokens"], row["completion_tokens"]) == (5, 4, 15, 4)
    assert row["errors"] == {"limit_rpm": 1}
    assert row["by_key"] == {"k1": {"requests": 2, "success": 1, "errors": 1, "prompt_tokens": 10,
                                    "completion_tokens": 4},
                             "k2": {"requests": 3, "success": 3, "prompt_tokens": 5}}
    assert row["by_model"].keys() == {"m1", "m2"} and row["by_endpoint"]["embeddings"]["requests"] == 3
    assert last_hour["window"] == "1h" and last_hour["from"] == (hour(now) - 1) * HOUR
    assert abs(last_hour["to"] - now) <= 1
    assert {k: week["orgs"][0][k] for k in ("requests", "success", "errors")} == {
        "requests": 5, "success": 4, "errors": {"limit_rpm": 1}}  # the day buckets hold it too


def test_an_organisation_without_usage_reports_zeros(redis_port):
    org = _org("org_report_idle")

    async def scenario(limiter, report, redis):
        return await report.usage([org], "30d")
    row = _run(redis_port, scenario)["orgs"][0]
    assert (row["requests"], row["errors"], row["by_key"]) == (0, {}, {})


def test_key_usage_lists_the_busiest_keys_of_a_day_first(redis_port):
    org = _org("org_report_keys")

    async def scenario(limiter, report, redis):
        await _count(limiter, org, USAGE)
        today = await report.today()
        return (await report.key_usage([org], today, 10), await report.key_usage([org], today, 1),
                await report.key_usage([org], today - 1, 10))
    both, busiest, yesterday = _run(redis_port, scenario)
    assert [k["key_id"] for k in both] == ["k2", "k1"]  # 3 requests before 2
    assert both[1] == {"key_id": "k1", "org_id": org.id, "requests": 2, "success": 1, "errors": 1,
                       "prompt_tokens": 10, "completion_tokens": 4}
    assert busiest == both[:1] and yesterday == []


def test_a_series_has_one_bucket_per_hour_oldest_first_and_can_follow_one_key(redis_port):
    org = _org("org_report_series")

    async def scenario(limiter, report, redis):
        await _count(limiter, org, USAGE)
        now = int((await redis.time())[0])
        return now, await report.series(org, "hour", 3), await report.series(org, "hour", 3, "k1")
    now, whole, k1 = _run(redis_port, scenario)
    assert [b["start"] for b in whole] == [(hour(now) - i) * HOUR for i in (2, 1, 0)]
    assert [b["requests"] for b in whole] == [0, 0, 5]
    assert whole[-1] == {"start": hour(now) * HOUR, "requests": 5, "success": 4, "prompt_tokens": 15,
                         "completion_tokens": 4, "errors": 1}
    assert k1[-1] == {"start": hour(now) * HOUR, "requests": 2, "success": 1, "prompt_tokens": 10,
                      "completion_tokens": 4, "errors": 1}


def test_quotas_report_each_limit_used_remaining_and_reset(redis_port):
    tokyo = _org("org_report_quota", timezone="Asia/Tokyo",
                 limits=Limits(rpm_limit=10, tpm_limit=1000, daily_request_limit=100))
    other = _org("org_report_quota_other")
    defaults = Limits(max_concurrent=5, monthly_token_limit=10**6)

    async def scenario(limiter, report, redis):
        scopes = counter_sets(tokyo.id, tokyo.limits.over(defaults), "k", Limits())
        for i in range(2):
            assert (await limiter.admit(f"q{i}", scopes, 300, 9 * 3600)).admitted
        now = int((await redis.time())[0])
        return now, await report.quotas([tokyo, other])
    now, (row, idle) = _run(redis_port, scenario, defaults)
    limits = row["limits"]
    assert (row["org_id"], row["timezone"]) == (tokyo.id, "Asia/Tokyo")
    assert {k: v for k, v in limits["rpm_limit"].items() if k != "resets_at"} == {
        "limit": 10, "used": 2, "remaining": 8}
    assert now < limits["rpm_limit"]["resets_at"] <= now + 61  # the oldest request's window end
    assert (limits["tpm_limit"]["used"], limits["tpm_limit"]["remaining"]) == (600, 400)
    assert limits["max_concurrent"] == {"limit": 5, "used": 2, "remaining": 3, "resets_at": None}
    assert (limits["daily_request_limit"]["used"], limits["daily_request_limit"]["remaining"]) == (2, 98)
    assert limits["daily_token_limit"] == {"limit": None, "used": 600, "remaining": None,
                                           "resets_at": limits["daily_request_limit"]["resets_at"]}
    assert limits["monthly_token_limit"]["limit"] == 10**6  # from the platform defaults
    midnight = datetime.fromtimestamp(limits["daily_request_limit"]["resets_at"], ZoneInfo("Asia/Tokyo"))
    assert (midnight.hour, midnight.minute) == (0, 0)  # the organisation's own midnight
    assert 0 < limits["daily_request_limit"]["resets_at"] - now <= 86400
    first = datetime.fromtimestamp(limits["monthly_token_limit"]["resets_at"], ZoneInfo("Asia/Tokyo"))
    assert (first.day, first.hour) == (1, 0)
    assert row["global_in_flight"] == idle["global_in_flight"] >= 2
    assert idle["limits"]["rpm_limit"] == {"limit": None, "used": 0, "remaining": None,
                                          "resets_at": idle["limits"]["rpm_limit"]["resets_at"]}
