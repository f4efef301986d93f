"""The state view: per backend, what it last reported on /metrics, how old that is, what failed."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from ..routing import Backend
from .parse import Figures

STALE_INTERVALS = 3  # figures older than this many scrape intervals are ignored


@dataclass(slots=True)
class BackendState:
    """One backend as this worker last saw it on /metrics; figures are None until a scrape
    succeeded. A failed scrape changes only `error` and `failures`: the figures age."""
    name: str
    running: float | None = None
    waiting: float | None = None
    kv_usage: float | None = None          # 0..1, the fullest engine's
    prefix_hits: float | None = None       # cumulative counters, in prompt tokens
    prefix_queries: float | None = None
    prefix_hit_ratio: float | None = None  # hits / queries between the last two scrapes that saw queries
    scraped_at: float | None = None        # clock() of the latest good scrape
    error: str | None = None               # why the latest scrape failed; None after a good one
    failures: int = 0                      # failed scrapes since the latest good one


class StateView:
    """Every backend's BackendState, one per worker, fed by the scraper, read by anyone.

    `stale_after` is in seconds (STALE_INTERVALS scrape intervals); 0 means the view is off and
    nothing is ever fresh. Reads are a dict lookup and a clock call: fit for the request path.
    """

    def __init__(self, names: Iterable[str], *, stale_after: float,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._stale_after = stale_after
        self._started = clock()
        self._states = {name: BackendState(name) for name in names}

    @property
    def enabled(self) -> bool:
        return self._stale_after > 0

    @property
    def stale_after(self) -> float:
        """Seconds after which a scrape's figures are no longer acted on."""
        return self._stale_after

    def state(self, name: str) -> BackendState:
        """The record as it stands, stale or not (for display)."""
        return self._states[name]

    def age(self, name: str) -> float:
        """Seconds since the latest good scrape (since the view began, if none succeeded)."""
        scraped_at = self._states[name].scraped_at
        return self._clock() - (self._started if scraped_at is None else scraped_at)

    def fresh(self, name: str) -> BackendState | None:
        """The record if its figures are recent enough to act on, else None."""
        state = self._states[name]
        if state.scraped_at is None or self._clock() - state.scraped_at > self._stale_after:
            return None
        return state

    def reported_load(self, name: str) -> float | None:
        """Requests the backend says it holds (running + waiting, from every worker and
        replica), or None without fresh figures: then only the worker's own counts are known."""
        state = self.fresh(name)
        return None if state is None else state.running + state.waiting

    def load(self, backend: Backend) -> float:
        """The best estimate of the requests on `backend`: what it reports when fresh (it
        includes this worker's), never less than this worker's own in-flight count."""
        reported = self.reported_load(backend.name)
        return backend.in_flight if reported is None else max(backend.in_flight, reported)

    def record(self, name: str, figures: Figures) -> None:
        """A good scrape: figures replace the old ones, the hit ratio moves with the counters."""
        state = self._states[name]
        state.prefix_hit_ratio = _hit_ratio(state, figures)
        state.running, state.waiting = figures.running, figures.waiting
        state.kv_usage = figures.kv_usage
        state.prefix_hits, state.prefix_queries = figures.prefix_hits, figures.prefix_queries
        state.scraped_at = self._clock()
        state.error, state.failures = None, 0

    def failed(self, name: str, error: str) -> None:
        """A scrape failed (timeout, refused, non-200, no vLLM figures): the old figures age."""
        state = self._states[name]
        state.error = error
        state.failures += 1

    def snapshot(self, name: str) -> dict:
        """The record for /health/detailed and gatewayctl."""
        s = self._states[name]
        return {"running": s.running, "waiting": s.waiting, "kv_usage": s.kv_usage,
                "prefix_hit_ratio": _round(s.prefix_hit_ratio), "prefix_hits": s.prefix_hits,
                "prefix_queries": s.prefix_queries, "age_secs": _round(self.age(name)),
                "fresh": self.fresh(name) is not None, "error": s.error, "failures": s.failures}


def _hit_ratio(old: BackendState, new: Figures) -> float | None:
    """Hits over queries since the previous scrape; the previous ratio while no queries came
    (or the counters went back: a restarted backend), None for an unknown counter."""
    if new.prefix_hits is None or new.prefix_queries is None:
        return None
    if old.prefix_hits is None or old.prefix_queries is None:
        return old.prefix_hit_ratio
    hits, queries = new.prefix_hits - old.prefix_hits, new.prefix_queries - old.prefix_queries
    if queries <= 0 or hits < 0:
        return old.prefix_hit_ratio
    return min(1.0, hits / queries)


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 3)
