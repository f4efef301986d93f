"""Choosing a backend within a pool: fewest requests in flight, ties broken at random."""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from .routing import Backend, Pool


class LeastInFlightBalancer:
    """Least-outstanding-requests balancing.

    Counts are per worker process: cheap, lock-free on the event loop, and with several
    workers each one still spreads its own share evenly. The random tie-break keeps
    idle pools from sending every first request to the same backend.
    """

    def __init__(self, rng: random.Random | None = None,
                 eligible: Callable[[Backend], bool] | None = None) -> None:
        self._rng = rng or random.Random()
        self._eligible = eligible or (lambda _b: True)

    def pick(self, pool: Pool, exclude: frozenset[str] = frozenset()) -> Backend | None:
        best: list[Backend] = []
        lowest = None
        for backend in pool.backends:
            if backend.name in exclude or not self._eligible(backend):
                continue
            if lowest is None or backend.in_flight < lowest:
                best, lowest = [backend], backend.in_flight
            elif backend.in_flight == lowest:
                best.append(backend)
        if not best:
            return None
        return best[0] if len(best) == 1 else self._rng.choice(best)

    @staticmethod
    @contextmanager
    def hold(backend: Backend) -> Iterator[Backend]:
        """Count a request against a backend for as long as it runs (streams included)."""
        backend.in_flight += 1
        try:
            yield backend
        finally:
            backend.in_flight -= 1
