"""Reading usage and quotas back for the admin API: usage by window, and each limit's state."""

from __future__ import annotations

from collections import defaultdict

from redis.asyncio import Redis

from ..tenancy.limits import Limits
from ..tenancy.records import Org
from ..keyspace import GLOBAL_CONCURRENCY, usage_prefix
from .redis_limiter import counter_sets
from .windows import SECS, QuotaPeriod, day, hour, quota_period, spans

WINDOWS = {"1h": ("h", 2), "24h": ("h", 24), "7d": ("d", 7), "30d": ("d", 30)}
WINDOW = 60_000


def _fold(rows: list[dict]) -> dict:
    """Sum `key|model|endpoint|metric` counters into totals and breakdowns."""
    total: dict = defaultdict(int)
    errors: dict = defaultdict(int)
    by: dict = {"key": defaultdict(lambda: defaultdict(int)), "model": defaultdict(lambda: defaultdict(int)),
                "endpoint": defaultdict(lambda: defaultdict(int))}
    for row in rows:
        for field, value in row.items():
            key_id, model, endpoint, metric = field.split("|", 3)
            n = int(value)
            if metric.startswith("error_"):
                errors[metric[6:]] += n
                metric = "errors"
            total[metric] += n
            for dim, name in (("key", key_id), ("model", model), ("endpoint", endpoint)):
                by[dim][name][metric] += n
    return {"requests": total["requests"], "success": total["success"], "errors": dict(errors),
            "prompt_tokens": total["prompt_tokens"], "completion_tokens": total["completion_tokens"],
            "by_key": {k: dict(v) for k, v in by["key"].items()},
            "by_model": {k: dict(v) for k, v in by["model"].items()},
            "by_endpoint": {k: dict(v) for k, v in by["endpoint"].items()}}


class UsageReport:
    def __init__(self, redis: Redis, defaults: Limits) -> None:
        self._r = redis
        self._defaults = defaults

    async def usage(self, orgs: list[Org], window: str) -> dict:
        kind, count = WINDOWS[window]
        now = int((await self._r.time())[0])
        current = hour(now) if kind == "h" else day(now)
        buckets = [current - i for i in range(count)]
        async with self._r.pipeline(transaction=False) as pipe:
            for org in orgs:
                for b in buckets:
                    pipe.hgetall(f"{usage_prefix(org.id)}{kind}:{b}")
            rows = await pipe.execute()
        step = SECS[kind]
        report = []
        for i, org in enumerate(orgs):
            report.append({"org_id": org.id, "name": org.name,
                           **_fold(rows[i * count:(i + 1) * count])})
        return {"window": window, "from": (current - count + 1) * step, "to": now, "orgs": report}

    async def today(self) -> int:
        """The current UTC day (days since the epoch), by Redis' clock like the buckets."""
        return day(int((await self._r.time())[0]))

    async def key_usage(self, orgs: list[Org], day: int, limit: int) -> list[dict]:
        """Each key's counters on one UTC day (days since the epoch), the busiest `limit`
        first: requests, successes, errors and tokens, summed over models and endpoints."""
        async with self._r.pipeline(transaction=False) as pipe:
            for org in orgs:
                pipe.hgetall(f"{usage_prefix(org.id)}d:{day}")
            rows = await pipe.execute()
        keys = []
        for org, row in zip(orgs, rows):
            for key_id, counters in _fold([row])["by_key"].items():
                keys.append({"key_id": key_id, "org_id": org.id,
                             **{m: counters.get(m, 0) for m in (
                                 "requests", "success", "errors", "prompt_tokens",
                                 "completion_tokens")}})
        keys.sort(key=lambda k: (-k["requests"], k["key_id"]))
        return keys[:limit]

    async def series(self, org: Org, granularity: str, count: int,
                     key_id: str | None = None) -> list[dict]:
        """The organisation's usage (or one key's) in each of the last `count` hours, days or
        months (UTC), oldest first: each bucket's start (epoch seconds) and its counters."""
        now = int((await self._r.time())[0])
        periods = spans(granularity, count, now)
        async with self._r.pipeline(transaction=False) as pipe:
            for _, kind, numbers in periods:
                for n in numbers:
                    pipe.hgetall(f"{usage_prefix(org.id)}{kind}:{n}")
            rows = iter(await pipe.execute())
        out = []
        for start, _, numbers in periods:
            got = [next(rows) for _ in numbers]
            if key_id is not None:
                got = [{f: v for f, v in row.items() if f.startswith(key_id + "|")} for row in got]
            folded = _fold(got)
            out.append({"start": start, **{m: folded[m] for m in (
                "requests", "success", "prompt_tokens", "completion_tokens")},
                        "errors": sum(folded["errors"].values())})
        return out

    async def quota(self, org: Org) -> dict:
        """Per limit: configured, used, remaining and when it resets (epoch seconds)."""
        return (await self.quotas([org]))[0]

    async def quotas(self, orgs: list[Org]) -> list[dict]:
        """quota() of each organisation, read in one pipeline."""
        secs, usecs = await self._r.time()
        now_ms = int(secs) * 1000 + int(usecs) // 1000
        plans = [self._plan(org, now_ms) for org in orgs]
        async with self._r.pipeline(transaction=False) as pipe:
            for plan in plans:
                plan.queue(pipe, now_ms)
            pipe.zcount(GLOBAL_CONCURRENCY, now_ms, "+inf")
            replies = await pipe.execute()
        global_in_flight = replies[-1]
        return [plan.row(replies[i * _QuotaPlan.REPLIES:(i + 1) * _QuotaPlan.REPLIES], now_ms,
                         global_in_flight) for i, plan in enumerate(plans)]

    def _plan(self, org: Org, now_ms: int) -> "_QuotaPlan":
        limits = org.limits.over(self._defaults)
        return _QuotaPlan(org, limits, counter_sets(org.id, limits, "-", Limits())[0],
                          quota_period(now_ms, org.timezone))


class _QuotaPlan:
    """One organisation's quota reads (queued on a pipeline) and the row made of the replies."""
    REPLIES = 7

    def __init__(self, org: Org, limits: Limits, scope, period: QuotaPeriod) -> None:
        self.org, self.limits, self.scope, self.period = org, limits, scope, period

    def queue(self, pipe, now_ms: int) -> None:
        scope, period = self.scope, self.period
        pipe.zcount(scope.prefix + "rpm", now_ms - WINDOW, "+inf")
        pipe.zrangebyscore(scope.prefix + "rpm", now_ms - WINDOW, "+inf", start=0, num=1, withscores=True)
        pipe.zrangebyscore(scope.prefix + "tpm", now_ms - WINDOW, "+inf", withscores=True)
        pipe.hgetall(scope.prefix + "tpmw")
        pipe.zcount(scope.leases, now_ms, "+inf")
        pipe.hgetall(f"{scope.quota_prefix}d:{period.day}")
        pipe.hgetall(f"{scope.quota_prefix}m:{period.month}")

    def row(self, replies: list, now_ms: int, global_in_flight: int) -> dict:
        rpm_used, rpm_oldest, tpm_entries, weights, in_flight, daily, monthly = replies
        limits, period, org = self.limits, self.period, self.org
        tpm_used = sum(int(weights.get(member, 0)) for member, _ in tpm_entries)
        window_reset = lambda oldest: (oldest[0][1] + WINDOW) / 1000 if oldest else now_ms / 1000  # noqa: E731

        def row(limit, used, resets_at):
            return {"limit": limit, "used": used, "remaining": max(0, limit - used) if limit else None,
                    "resets_at": resets_at}
        return {"org_id": org.id, "name": org.name, "timezone": org.timezone, "limits": {
            "rpm_limit": row(limits.rpm_limit, rpm_used, window_reset(rpm_oldest)),
            "tpm_limit": row(limits.tpm_limit, tpm_used, window_reset(tpm_entries[:1])),
            "max_concurrent": row(limits.max_concurrent, in_flight, None),
            "daily_token_limit": row(limits.daily_token_limit, int(daily.get("tok", 0)), period.day_resets_at),
            "daily_request_limit": row(limits.daily_request_limit, int(daily.get("req", 0)), period.day_resets_at),
            "monthly_token_limit": row(limits.monthly_token_limit, int(monthly.get("tok", 0)),
                                       period.month_resets_at),
        }, "global_in_flight": global_in_flight}
