"""Redis's clock as this worker sees it: deadlines for admission scripts, in Redis time.

An admission script that reaches Redis after its caller gave up (a stalled Redis, a resent
command) must do nothing: the caller has already answered, maybe admitted by the local
limiter, and a late script would take a lease nobody settles and count the request twice. So
each script carries a deadline that it checks against Redis's own TIME. The deadline is
computed here, from this worker's monotonic clock and an offset learnt from the scripts' own
replies (each returns Redis's time): neither the hosts' wall clocks need agree nor a step of
this worker's wall clock matter.

Each reply is a sample: Redis's time lies between the local times the call left and came
back, so offset = redis - midpoint, with an error of at most half the round trip. The sample
with the shortest round trip is kept, so a stalled reply never skews the estimate. A kept
sample older than SAMPLE_MAX_AGE_SECS gives way to the next one that is nearly as good (a
round trip within AGED_RTT_FACTOR of it, or under RTT_FLOOR_SECS), so a step of Redis's clock
is followed; a reply that says its deadline had passed although it came back in time is
taken as is (`sample(..., force=True)`): the estimate was wrong, whatever its round trip.
"""

from __future__ import annotations

from collections.abc import Callable

SAMPLE_MAX_AGE_SECS = 30.0
AGED_RTT_FACTOR = 4.0
RTT_FLOOR_SECS = 0.002


class RedisClock:
    def __init__(self, monotonic: Callable[[], float], wall: Callable[[], float]) -> None:
        self._monotonic = monotonic
        # Until the first reply: the wall clocks agree (one host, the usual case).
        self._offset_ms = wall() * 1000 - monotonic() * 1000
        self._rtt = float("inf")
        self._taken = float("-inf")

    def local(self) -> float:
        """This worker's monotonic clock, in seconds: what `sample` takes as sent and received."""
        return self._monotonic()

    def now_ms(self) -> int:
        return int(self._monotonic() * 1000 + self._offset_ms)

    def deadline_ms(self, within_secs: float) -> int:
        return int((self._monotonic() + within_secs) * 1000 + self._offset_ms)

    def sample(self, sent: float, redis_ms: int, received: float, *, force: bool = False) -> None:
        rtt = received - sent
        aged = received - self._taken > SAMPLE_MAX_AGE_SECS
        if force or rtt <= self._rtt or (
                aged and rtt <= max(self._rtt * AGED_RTT_FACTOR, RTT_FLOOR_SECS)):
            self._offset_ms = redis_ms - (sent + received) * 500
            self._rtt, self._taken = rtt, received
