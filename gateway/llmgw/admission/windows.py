"""Time windows of quotas and usage, in one place.

- Usage buckets are UTC hours and days, numbered since the epoch (`hour`, `day`); a month of
  usage is the UTC days in it (`spans`).
- Quotas count in the organisation's own time zone: its local day (days since the epoch,
  shifted by the zone's offset) and its month (yyyymm), reset at local midnight and on the
  1st. The limiter's scripts compute the same numbers from Redis' clock and the offset the
  gateway passes them (`tz_offset`), so a quota's day is one day wherever it is read.
"""

from __future__ import annotations

import zoneinfo
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

HOUR, DAY = 3600, 86400
SECS = {"h": HOUR, "d": DAY}


def hour(epoch_secs: int) -> int:
    return epoch_secs // HOUR


def day(epoch_secs: int) -> int:
    return epoch_secs // DAY


def tz_offset(zone: str, at: datetime | None = None) -> int:
    """The zone's offset from UTC in seconds, now or at `at`."""
    if zone == "UTC":
        return 0
    tz = zoneinfo.ZoneInfo(zone)
    return int((at.astimezone(tz) if at else datetime.now(tz)).utcoffset().total_seconds())


@dataclass(frozen=True)
class QuotaPeriod:
    """An organisation's quota day and month at one moment, and when each resets."""
    day: int           # local days since the epoch
    month: int         # yyyymm
    day_resets_at: float
    month_resets_at: float


def quota_period(epoch_ms: int, zone: str) -> QuotaPeriod:
    local = datetime.fromtimestamp(epoch_ms / 1000, zoneinfo.ZoneInfo(zone))
    offset = int(local.utcoffset().total_seconds())
    midnight = (local + timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
    first = local.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    next_month = (first + timedelta(days=32)).replace(day=1)
    return QuotaPeriod((epoch_ms // 1000 + offset) // DAY, local.year * 100 + local.month,
                       midnight.timestamp(), next_month.timestamp())


def spans(granularity: str, count: int, now: int) -> list[tuple[int, str, list[int]]]:
    """(start, bucket kind, bucket numbers) of the last `count` UTC hours, days or calendar
    months up to `now`: an hour or a day is one stored bucket, a month the days in it."""
    if granularity == "hour":
        return [(h * HOUR, "h", [h]) for h in range(hour(now) - count + 1, hour(now) + 1)]
    if granularity == "day":
        return [(d * DAY, "d", [d]) for d in range(day(now) - count + 1, day(now) + 1)]
    today = datetime.fromtimestamp(now, timezone.utc).date()
    firsts = []
    year, month = today.year, today.month
    for _ in range(count):
        firsts.append(datetime(year, month, 1, tzinfo=timezone.utc))
        year, month = (year, month - 1) if month > 1 else (year - 1, 12)
    out = []
    for first in reversed(firsts):
        after = (first + timedelta(days=32)).replace(day=1)
        start_day, end_day = day(int(first.timestamp())), day(int(after.timestamp()))
        out.append((int(first.timestamp()), "d", list(range(start_day, min(end_day, day(now) + 1)))))
    return out
