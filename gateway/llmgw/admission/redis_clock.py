"""Redis's clock as this worker sees it: deadlines for admission scripts, in Redis time.

An admission script that reaches Redis after its caller gave up (a stalled Redis, a resent
command) must do nothing: the caller has already answered, maybe admitted by the local
limiter, and a late script would take a lease nobody settles and count the request twice. So
each script carries a deadline that it checks against Redis's own TIME. The deadline is
computed here, from this worker's wall clock and an offset learned from the scripts' own
replies (each returns Redis's time), so clocks of different hosts need not agree.

Each reply is a sample: Redis's time lies between the local times the call left and came
back, so offset = redis - midpoint, with an error of at most half the round trip. The sample
with the shortest round trip is kept; a stalled reply (a long round trip) therefore never
skews the estimate, and a sample older than SAMPLE_MAX_AGE_SECS gives way to the next one,
so a stepped clock is followed within that time.
"""

from __future__ import annotations

from collections.abc import Callable

SAMPLE_MAX_AGE_SECS = 30.0


class RedisClock:
    def __init__(self, wall: Callable[[], float]) -> None:
        self._wall = wall
        self._offset_ms = 0.0  # until the first reply: the same clock (one host, the usual case)
        self._rtt = float("inf")
        self._taken = float("-inf")
        self.synced = False

    def local(self) -> float:
        """This worker's wall clock, in seconds: what `sample` takes as `sent` and `received`."""
        return self._wall()

    def now_ms(self) -> int:
        return int(self._wall() * 1000 + self._offset_ms)

    def deadline_ms(self, within_secs: float) -> int:
        return int(self._wall() * 1000 + self._offset_ms + within_secs * 1000)

    def sample(self, sent: float, redis_ms: int, received: float) -> None:
        rtt = received - sent
        if rtt <= self._rtt or received - self._taken > SAMPLE_MAX_AGE_SECS:
            self._offset_ms = redis_ms - (sent + received) * 500
            self._rtt, self._taken, self.synced = rtt, received, True
