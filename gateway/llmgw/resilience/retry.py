"""Retries before the first byte: which failures qualify, backoff with jitter, and a retry budget."""

from __future__ import annotations

import random
import time
from collections import deque
from collections.abc import Awaitable, Callable

import tenacity

from ..errors import GatewayError


class RetryableFailure(Exception):
    """An attempt that failed before anything reached the client, in a way another try may fix.

    `reason` is the metric label: connect, timeout or status (a 5xx from the backend).
    """

    def __init__(self, error: GatewayError, reason: str) -> None:
        super().__init__(error.message)
        self.error, self.reason = error, reason


class RetryBudget:
    """Retries may be at most `ratio` of the requests seen over the last `window_secs`, but for
    failover to a sound backend.

    When a whole pool is down every request fails, and retrying each would multiply the load
    on whatever is left; the budget caps that amplification at 1 + ratio. Failover to a sound
    backend the request has not tried is always allowed (RetryPolicy's `free`): that is one
    replica failing, not the pool. It is counted all the same, so once the pool turns out to
    fail whole the retries that follow stay within the share. A small floor (`min_retries`
    per window, as Finagle's budgets have) still lets a quiet worker retry what failover
    cannot cover, such as a dropped keep-alive connection in a pool of one.
    """

    def __init__(self, ratio: float, *, window_secs: float = 10.0, min_retries: int = 3,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._ratio, self._window, self._clock = ratio, window_secs, clock
        self._floor = min_retries
        self._requests: deque[float] = deque()
        self._retries: deque[float] = deque()

    def _trim(self, now: float) -> None:
        for times in (self._requests, self._retries):
            while times and times[0] <= now - self._window:
                times.popleft()

    def record_request(self) -> None:
        self._requests.append(self._clock())

    def try_spend(self, *, free: bool = False) -> bool:
        """Take one retry from the budget, if there is one left. A `free` one (failover) is
        taken even when there is none: it still counts against the retries that follow, so
        a pool that turns out to fail whole gets no more than the budget's share on top."""
        now = self._clock()
        self._trim(now)
        allowed = max(self._floor, self._ratio * len(self._requests))
        if not free and len(self._retries) + 1 > allowed:
            return False
        self._retries.append(now)
        return True


class Backoff:
    """Exponential backoff with full jitter: attempt n waits uniform(0, base * 2^(n-1)), capped."""

    def __init__(self, base_secs: float, cap_secs: float, rng: random.Random) -> None:
        self._base, self._cap, self._rng = base_secs, cap_secs, rng

    def __call__(self, state: tenacity.RetryCallState) -> float:
        return self._rng.uniform(0, min(self._cap, self._base * 2 ** (state.attempt_number - 1)))


class RetryPolicy:
    """Runs an attempt with tenacity, retrying RetryableFailure while attempts and budget allow."""

    def __init__(self, *, max_retries: int, budget: RetryBudget, backoff: Backoff,
                 sleep: Callable[[float], Awaitable[None]] | None = None) -> None:
        self.max_retries, self.budget, self._backoff = max_retries, budget, backoff
        self._sleep = sleep

    def _should_retry(self, state: tenacity.RetryCallState, time_left: Callable[[], float],
                      free: Callable[[], bool]) -> bool:
        exc = state.outcome.exception() if state.outcome else None
        # The budget is asked last: taking from it is the one side effect.
        return (isinstance(exc, RetryableFailure) and state.attempt_number <= self.max_retries
                and time_left() > 0 and self.budget.try_spend(free=free()))

    async def run(self, attempt: Callable[[int], Awaitable], on_retry: Callable[[str], None],
                  time_left: Callable[[], float] = lambda: float("inf"),
                  free: Callable[[], bool] = lambda: False):
        """`attempt(n)` for n = 0, 1, ...; the last failure's GatewayError is raised.

        `time_left()` is what remains of the deadline the attempts share: no retry starts
        once it is spent, and no backoff sleeps past it. `free()`, asked after a failure,
        says whether the next attempt is failover to a sound untried backend: then it needs
        no retry budget, only attempts and time left.
        """
        self.budget.record_request()
        try:
            # The first attempt runs bare: tenacity's machinery costs about a tenth of a
            # request's CPU and is only needed once something has failed.
            return await attempt(0)
        except RetryableFailure as first:
            failure = first
        kwargs = {"sleep": self._sleep} if self._sleep is not None else {}
        retrying = tenacity.AsyncRetrying(
            retry=lambda state: self._should_retry(state, time_left, free),
            wait=lambda state: min(self._backoff(state), max(0.0, time_left())), reraise=True,
            before_sleep=lambda s: on_retry(s.outcome.exception().reason), **kwargs)
        try:
            async for try_ in retrying:
                with try_:
                    if try_.retry_state.attempt_number == 1:
                        raise failure  # the bare first attempt's outcome, seen by tenacity
                    return await attempt(try_.retry_state.attempt_number - 1)
        except RetryableFailure as exc:
            raise exc.error from None
