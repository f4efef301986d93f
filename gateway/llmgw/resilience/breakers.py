"""Circuit breakers per backend: consecutive backend failures take it out of rotation for a while."""

from __future__ import annotations

import time
from collections.abc import Callable

import pybreaker

from ..observability.metrics import Metrics

STATE_CODES = {pybreaker.STATE_CLOSED: 0, pybreaker.STATE_HALF_OPEN: 1, pybreaker.STATE_OPEN: 2}


class _BackendFailed(Exception):
    """Carries a failure outcome into pybreaker, which counts exceptions."""


def _raise_failure() -> None:
    raise _BackendFailed()


class _StateGauge(pybreaker.CircuitBreakerListener):
    def __init__(self, metrics: Metrics | None, on_closed: Callable[[str], None]) -> None:
        self._metrics = metrics
        self._on_closed = on_closed

    def state_change(self, cb, old_state, new_state) -> None:
        if self._metrics is not None:
            self._metrics.breaker.labels(cb.name).set(STATE_CODES[new_state.name])
        if new_state.name == pybreaker.STATE_CLOSED and old_state is not None \
                and old_state.name != pybreaker.STATE_CLOSED:
            self._on_closed(cb.name)


class Breakers:
    """One pybreaker per backend, fed outcomes after each call rather than wrapping it.

    pybreaker wraps synchronous calls and times recovery with the wall clock; the gateway's
    calls are async and its tests need an injected clock, so this class decides when an open
    breaker may try again (`clock`) and lets exactly one trial request through while half-open.
    A health check that sees the backend ready again cuts the wait short (`ready`).

    `on_refused(name)` hears of refused connections (the health monitor takes the backend
    out); `on_closed(name)` of a breaker closing again (its capacity is back for the queue).
    """

    def __init__(self, names: list[str], *, failure_threshold: int, recovery_secs: float,
                 clock: Callable[[], float] = time.monotonic, metrics: Metrics | None = None,
                 on_refused: Callable[[str], None] = lambda _name: None,
                 on_closed: Callable[[str], None] = lambda _name: None) -> None:
        self._clock = clock
        self._recovery = recovery_secs
        self._on_refused = on_refused
        listener = _StateGauge(metrics, on_closed)
        self._cbs = {n: pybreaker.CircuitBreaker(fail_max=failure_threshold, name=n,
                                                 reset_timeout=recovery_secs, listeners=[listener])
                     for n in names}
        self._opened_at: dict[str, float] = {}
        self._trial: set[str] = set()  # half-open backends whose one trial request is running

    def state(self, name: str) -> str:
        cb = self._cbs[name]
        if cb.current_state == pybreaker.STATE_OPEN and self._recovered(name):
            cb.half_open()
        return cb.current_state

    def _recovered(self, name: str) -> bool:
        return self._clock() - self._opened_at.get(name, float("-inf")) >= self._recovery

    def allows(self, name: str) -> bool:
        """May a request be sent now? Closed: yes; half-open: only if no trial is running."""
        state = self.state(name)
        return state == pybreaker.STATE_CLOSED or (
            state == pybreaker.STATE_HALF_OPEN and name not in self._trial)

    def taken(self, name: str) -> None:
        """A request was sent to `name`; while half-open it is the one trial."""
        if self._cbs[name].current_state == pybreaker.STATE_HALF_OPEN:
            self._trial.add(name)

    def abandon(self, name: str) -> None:
        """The request ended without an outcome (cancelled): let another be the trial."""
        self._trial.discard(name)

    def success(self, name: str) -> None:
        self._trial.discard(name)
        cb = self._cbs[name]
        if cb.current_state == pybreaker.STATE_OPEN:
            return  # opened by other requests meanwhile: the trial decides, not a straggler
        if cb.current_state == pybreaker.STATE_CLOSED and not cb.fail_counter:
            return  # nothing to reset: spare every request pybreaker's locked call
        cb.call(lambda: None)

    def failure(self, name: str) -> None:
        """A connect error, timeout or 5xx of the backend (a client's 4xx is never counted)."""
        self._trial.discard(name)
        cb = self._cbs[name]
        if cb.current_state == pybreaker.STATE_OPEN:
            return  # already open: a straggler must not extend the recovery time
        try:
            cb.call(_raise_failure)
        except (_BackendFailed, pybreaker.CircuitBreakerError):
            pass
        if cb.current_state == pybreaker.STATE_OPEN:
            self._opened_at[name] = self._clock()

    def refused(self, name: str) -> None:
        """Nothing accepted the connection (killed, restarting): counted by `failure` too."""
        self._on_refused(name)

    def ready(self, name: str) -> None:
        """A health check passed after failing: an open breaker lets its trial through now
        rather than after the rest of its recovery time."""
        cb = self._cbs[name]
        if cb.current_state == pybreaker.STATE_OPEN:
            self._opened_at[name] = float("-inf")
            cb.half_open()  # now, not at the next state() call: the gauge shows it too

    def snapshot(self) -> dict[str, str]:
        return {name: self.state(name) for name in self._cbs}
