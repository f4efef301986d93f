"""Choosing a backend within a pool: fewest requests in flight, ties broken at random."""

from __future__ import annotations

import random
from collections.abc import Callable

from .routing import Backend, Pool


class LeastInFlightBalancer:
    """Least-outstanding-requests balancing.

    Counts are per worker process: cheap, lock-free on the event loop, and with several
    workers each one still spreads its own share evenly. The random tie-break keeps
    idle pools from sending every first request to the same backend.
    """

    def __init__(self, rng: random.Random | None = None,
                 eligible: Callable[[Backend], bool] | None = None, *, bounded: bool = False,
                 on_release: Callable[[Backend], None] | None = None) -> None:
        self._rng = rng or random.Random()
        self._eligible = eligible or (lambda _b: True)
        # bounded: at most max_num_seqs requests per backend from this worker; unbounded, a
        # backend's own queue absorbs the excess.
        self._bounded = bounded
        self._on_release = on_release or (lambda _b: None)

    def capacity(self, backend: Backend) -> int:
        """How many requests this worker may have in flight on the backend."""
        return backend.max_num_seqs if self._bounded else 1 << 30

    def available(self, pool: Pool, exclude: frozenset[str] = frozenset()) -> bool:
        """Could any backend serve, were it not full? (healthy, breaker not open)"""
        return any(b.name not in exclude and self._eligible(b) for b in pool.backends)

    def eligible(self, backend: Backend) -> bool:
        return self._eligible(backend)

    def pick(self, pool: Pool, exclude: frozenset[str] = frozenset()) -> Backend | None:
        """The eligible backend with a free slot and the fewest requests in flight, or None."""
        best: list[Backend] = []
        lowest = None
        for backend in pool.backends:
            if backend.name in exclude or backend.in_flight >= self.capacity(backend) \
                    or not self._eligible(backend):
                continue
            if lowest is None or backend.in_flight < lowest:
                best, lowest = [backend], backend.in_flight
            elif backend.in_flight == lowest:
                best.append(backend)
        if not best:
            return None
        return best[0] if len(best) == 1 else self._rng.choice(best)

    @staticmethod
    def take(backend: Backend) -> None:
        backend.in_flight += 1

    def release(self, backend: Backend) -> None:
        """A slot came free: the admission queue may hand it on."""
        backend.in_flight -= 1
        self._on_release(backend)
