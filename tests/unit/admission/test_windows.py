"""windows: UTC usage buckets, an organisation's local quota day and month with their resets
(across a daylight-saving change and a year end), and the spans of a usage series."""

from __future__ import annotations

from datetime import datetime, timezone

from llmgw.admission.windows import day, hour, quota_period, spans, tz_offset


def _ms(*args, tz=timezone.utc) -> int:
    return int(datetime(*args, tzinfo=tz).timestamp() * 1000)


def test_utc_buckets():
    assert hour(7200) == 2 and day(86400 * 3 + 5) == 3


def test_a_local_day_and_month_and_their_resets():
    # 23:30 UTC on 31 Dec is already 1 Jan in Berlin (UTC+1): a new day and a new month.
    period = quota_period(_ms(2026, 12, 31, 23, 30), "Europe/Berlin")
    assert period.month == 202701
    assert period.day == day(int(datetime(2027, 1, 1, tzinfo=timezone.utc).timestamp()))
    assert period.day_resets_at == datetime(2027, 1, 1, 23, 0, tzinfo=timezone.utc).timestamp()
    assert period.month_resets_at == datetime(2027, 1, 31, 23, 0, tzinfo=timezone.utc).timestamp()
    utc = quota_period(_ms(2026, 12, 31, 23, 30), "UTC")
    assert utc.month == 202612 and utc.day == period.day - 1


def test_offsets_follow_daylight_saving():
    assert tz_offset("UTC") == 0
    summer = datetime(2026, 7, 1, tzinfo=timezone.utc)
    winter = datetime(2026, 1, 1, tzinfo=timezone.utc)
    assert tz_offset("Europe/Berlin", summer) == 7200 and tz_offset("Europe/Berlin", winter) == 3600


def test_spans_of_hours_days_and_months():
    now = int(datetime(2026, 3, 2, 10, 15, tzinfo=timezone.utc).timestamp())
    assert [s[2] for s in spans("hour", 2, now)] == [[hour(now) - 1], [hour(now)]]
    months = spans("month", 2, now)
    feb, mar = months
    assert feb[0] == int(datetime(2026, 2, 1, tzinfo=timezone.utc).timestamp())
    assert len(feb[2]) == 28 and mar[2] == [day(now) - 1, day(now)]  # March so far: 2 days
