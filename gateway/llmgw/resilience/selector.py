"""Choosing the backend for one attempt: an eligible one with a free slot, else a fair wait."""

from __future__ import annotations

import time
from collections.abc import Callable

from ..balancer import LeastInFlightBalancer
from ..errors import BackendUnavailable, NoCapacity
from ..observability.metrics import Metrics
from ..placement.policy import Placement
from ..routing import Backend, Model, Pool
from .breakers import Breakers
from .queue import FairQueue
from .suspects import Suspects


class BackendSelector:
    """Balancer + breakers + suspects + admission queue: returns a backend with its slot
    already taken, a sound one (no recent failure) while one has a free slot."""

    def __init__(self, balancer: LeastInFlightBalancer, breakers: Breakers, queue: FairQueue, *,
                 queue_timeout: float, suspects: Suspects | None = None,
                 metrics: Metrics | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.balancer, self.breakers, self.queue = balancer, breakers, queue
        self.suspects = suspects if suspects is not None else Suspects(0.0, clock=clock)
        self._timeout, self._metrics, self._clock = queue_timeout, metrics, clock

    def _suspects(self, pool: Pool) -> frozenset[str]:
        return self.suspects.among(b.name for b in pool.backends)

    def _pick(self, model: Model, exclude: frozenset[str], avoid: frozenset[str],
              placement: Placement | None) -> Backend | None:
        # A sound backend not tried yet, if one can serve; else any not tried yet; else any
        # not avoided (a transport failure may go back to a backend already tried).
        pool, pick = model.pool, self.balancer.pick
        suspects = self._suspects(pool)
        return (suspects and pick(pool, exclude | avoid | suspects, placement)) or \
            pick(pool, exclude | avoid, placement) or (
                pick(pool, avoid, placement) if exclude - avoid else None)

    def sound_left(self, model: Model, exclude: frozenset[str]) -> bool:
        """Could a sound backend not in `exclude` serve (healthy, breaker closed, no recent
        failure)? Then a retry there fails over rather than amplifies a failing pool's load."""
        return self.balancer.available(model.pool, exclude | self._suspects(model.pool))

    async def acquire(self, model: Model, org: str | None, exclude: frozenset[str] = frozenset(),
                      avoid: frozenset[str] = frozenset(),
                      placement: Placement | None = None) -> tuple[Backend, int]:
        """A backend not in `avoid`, preferably not in `exclude` either, its slot taken, and
        the request's prefill estimate there (give it back to `prefilled` or `release`).
        `placement` places the request by a prefix or session pool's policy (placement/)."""
        pool = model.pool.name
        deadline = None
        woken = False
        while True:
            if woken or not self.queue.busy(pool):
                backend = self._pick(model, exclude, avoid, placement)
                if woken:
                    self.queue.taken(pool)
                    woken = False
                if backend is not None:
                    prefill = self.balancer.take(backend, model.pool, placement)
                    self.breakers.taken(backend.name)
                    return backend, prefill
            if not self.balancer.available(model.pool, avoid):
                # All down, loading or open: waiting would not help, say so at once.
                raise BackendUnavailable(f"no backend available for model {model.name}",
                                         headers={"Retry-After": "5"})
            now = self._clock()
            deadline = deadline if deadline is not None else now + self._timeout
            if now >= deadline or not await self.queue.wait(pool, org or "-", deadline - now):
                self._refused(org)
                raise NoCapacity(f"every backend for model {model.name} is busy; retry shortly",
                                 headers={"Retry-After": "1"})
            woken = True

    def release(self, backend: Backend, prefill: int = 0) -> None:
        self.balancer.release(backend, prefill)

    def prefilled(self, backend: Backend, prefill: int) -> None:
        self.balancer.prefilled(backend, prefill)

    def wake(self, pool: Pool) -> None:
        """Offer the queue every free slot of `pool` not already promised to a woken waiter.

        Called when a slot frees and when a backend comes back (health check passed, breaker
        closed): waiters then get the returning capacity now, not at their timeout.
        """
        if not self.queue.depth(pool.name):
            return  # the usual case, on every request's release: nobody waits
        free = sum(max(0, self.balancer.capacity(b) - b.in_flight) for b in pool.backends
                   if self.balancer.eligible(b))
        for _ in range(min(free - self.queue.promised(pool.name), self.queue.depth(pool.name))):
            self.queue.offer(pool.name)

    def recovered(self, backend: Backend, pool: Pool) -> None:
        """A health check passed again: let the breaker's trial through, wake the queue. The
        failures that made the backend suspect came before it went out of rotation (a crash,
        a restart): the passing probe is newer evidence, so it gets first tries at once."""
        self.suspects.served(backend.name)
        self.breakers.ready(backend.name)
        self.wake(pool)

    def _refused(self, org: str | None) -> None:
        if self._metrics is not None:
            self._metrics.rejections.labels(*self._metrics.org(org), "no_capacity").inc()
