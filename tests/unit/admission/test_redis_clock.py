"""Redis's clock as this worker sees it: the offset learnt from replies, the sample with the
shortest round trip kept, aged samples replaced by nearly-as-good ones, forced ones taken as
is. (The offset learnt from real scripts' replies is tested in test_redis_limiter.py.)"""

from llmgw.admission.redis_clock import (AGED_RTT_FACTOR, RTT_FLOOR_SECS, SAMPLE_MAX_AGE_SECS,
                                         RedisClock)


class Mono:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_the_clock_keeps_the_sample_with_the_shortest_round_trip():
    mono = [1000.0]
    clock = RedisClock(lambda: mono[0], lambda: 0.0)
    clock.sample(999.99, 5_000_000, 1000.0)          # 10 ms round trip: offset about 4,000 s
    clock.sample(999.0, 9_000_000, 1000.0)           # a stalled reply (1 s): ignored
    assert abs(clock.now_ms() - 5_000_005) <= 1
    mono[0] += SAMPLE_MAX_AGE_SECS + 1                # the best sample is old now, but a stalled
    clock.sample(mono[0] - 0.5, 9_000_000, mono[0])  # reply still does not replace it
    assert abs(clock.now_ms() - (5_000_005 + (SAMPLE_MAX_AGE_SECS + 1) * 1000)) <= 1
    clock.sample(mono[0] - 0.03, 7_000_000, mono[0])  # one nearly as good does
    assert abs(clock.now_ms() - 7_000_015) <= 1
    clock.sample(mono[0] - 0.5, 6_000_000, mono[0], force=True)  # an expired reply: taken as is
    assert abs(clock.now_ms() - 6_000_250) <= 1


def test_until_the_first_reply_the_wall_clock_is_taken_for_redis():
    mono = Mono(50.0)
    clock = RedisClock(mono, lambda: 1_700_000_000.0)
    assert clock.now_ms() == 1_700_000_000_000
    mono.now += 2.5  # time goes on by the monotonic clock, whatever the wall clock does
    assert clock.now_ms() == 1_700_000_002_500
    assert clock.local() == 52.5


def test_a_deadline_is_now_plus_the_time_allowed_in_redis_time():
    mono = Mono()
    clock = RedisClock(mono, lambda: 0.0)
    clock.sample(999.998, 42_000_000, 1000.002)  # Redis at 42,000 s when this worker is at 1,000
    assert clock.now_ms() == 42_000_000
    assert clock.deadline_ms(0.25) == 42_000_250
    mono.now += 1
    assert clock.deadline_ms(0) == clock.now_ms() == 42_001_000


def test_an_aged_sample_gives_way_only_within_the_factor_or_under_the_floor():
    mono = Mono()
    clock = RedisClock(mono, lambda: 0.0)
    clock.sample(1000.0 - 0.0001, 1_000_000, 1000.0)  # 0.1 ms: a very good sample
    mono.now += SAMPLE_MAX_AGE_SECS + 1
    worse = 0.0001 * AGED_RTT_FACTOR * 2  # more than the factor, but under the floor
    assert worse < RTT_FLOOR_SECS
    clock.sample(mono.now - worse, 5_000_000, mono.now)
    assert abs(clock.now_ms() - 5_000_000) <= 1  # under RTT_FLOOR_SECS counts as nearly as good


def test_a_fresh_best_sample_is_not_replaced_by_a_slightly_worse_one():
    mono = Mono()
    clock = RedisClock(mono, lambda: 0.0)
    clock.sample(999.99, 5_000_000, 1000.0)  # 10 ms
    clock.sample(999.98, 9_000_000, 1000.0)  # 20 ms, while the best one is still young
    assert abs(clock.now_ms() - 5_000_005) <= 1
    clock.sample(999.995, 8_000_000, 1000.0)  # 5 ms: better, taken at once
    assert abs(clock.now_ms() - 8_000_002) <= 1
