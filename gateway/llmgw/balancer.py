"""Choosing a backend within a pool: by the pool's policy among the backends that can serve
(eligible, with a free slot); by default the fewest requests in flight, ties at random."""

from __future__ import annotations

import random
from collections.abc import Callable

from .placement.policy import choose
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

    def pick(self, pool: Pool, exclude: frozenset[str] = frozenset(),
             key: int | None = None) -> Backend | None:
        """The backend for the next attempt, or None if none can serve now. With a `key`
        (the pool's policy bound the request: placement/policy.py), the key's backend unless
        it is much busier than the others; else the one with the fewest requests in flight."""
        if key is not None or pool.policy.name == "random":
            free = [b for b in pool.backends if b.name not in exclude
                    and b.in_flight < self.capacity(b) and self._eligible(b)]
            if not free:
                return None
            if key is None:
                return self._rng.choice(free)
            return choose(free, key, pool.policy, _in_flight, _seed)
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


def _in_flight(backend: Backend) -> int:
    return backend.in_flight


def _seed(backend: Backend) -> int:
    return backend.seed
