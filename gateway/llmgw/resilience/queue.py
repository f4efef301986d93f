"""The fair admission queue: requests wait for backend capacity, served round robin by organisation."""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict, deque
from collections.abc import Callable

from ..observability.metrics import Metrics


class FairQueue:
    """Waiters per pool, grouped by organisation; a freed slot goes to the next organisation
    in turn, not to the oldest waiter, so one tenant's burst cannot starve the others.

    Per worker, like the balancer's in-flight counts. A woken waiter is counted as a
    `handoff` until it has taken its slot, so a newcomer cannot take the slot meanwhile.
    """

    def __init__(self, *, clock: Callable[[], float] = time.monotonic,
                 metrics: Metrics | None = None) -> None:
        self._clock = clock
        self._metrics = metrics
        self._waiting: dict[str, OrderedDict[str, deque[asyncio.Future]]] = {}
        self._handoffs: dict[str, int] = {}

    def depth(self, pool: str) -> int:
        return sum(len(q) for q in self._waiting.get(pool, {}).values())

    def promised(self, pool: str) -> int:
        """Woken waiters that have not taken their slot yet."""
        return self._handoffs.get(pool, 0)

    def busy(self, pool: str) -> bool:
        """Are others ahead? Then a newcomer must queue even if it sees a free slot."""
        return self.depth(pool) > 0 or self._handoffs.get(pool, 0) > 0

    async def wait(self, pool: str, org: str, timeout: float) -> bool:
        """Wait for a slot to be offered; False once `timeout` has passed without one."""
        future = asyncio.get_running_loop().create_future()
        orgs = self._waiting.setdefault(pool, OrderedDict())
        orgs.setdefault(org, deque()).append(future)
        self._gauge(pool)
        started = self._clock()
        try:
            await asyncio.wait_for(asyncio.shield(future), timeout)
            return True
        except TimeoutError:
            if future.done() and not future.cancelled():
                return True  # offered just as the time ran out: take it
            return False
        except asyncio.CancelledError:
            if future.done() and not future.cancelled():  # offered, but the client left
                self.taken(pool)
                self.offer(pool)
            raise
        finally:
            self._forget(pool, org, future)
            if self._metrics is not None:
                self._metrics.queue_wait.labels(pool).observe(self._clock() - started)

    def taken(self, pool: str) -> None:
        """A woken waiter has taken (or given up) its slot."""
        if self._handoffs.get(pool, 0) > 0:
            self._handoffs[pool] -= 1

    def offer(self, pool: str) -> None:
        """A slot in `pool` came free: wake the first waiter of the next organisation in turn."""
        orgs = self._waiting.get(pool)
        while orgs:
            org, waiters = next(iter(orgs.items()))
            orgs.move_to_end(org)  # round robin: this organisation goes to the back
            while waiters:
                future = waiters.popleft()
                if not future.done():
                    future.set_result(None)
                    self._handoffs[pool] = self._handoffs.get(pool, 0) + 1
                    if not waiters:
                        del orgs[org]
                    self._gauge(pool)
                    return
            del orgs[org]

    def _forget(self, pool: str, org: str, future: asyncio.Future) -> None:
        waiters = self._waiting.get(pool, {}).get(org)
        if waiters is not None and future in waiters:
            waiters.remove(future)
            if not waiters:
                del self._waiting[pool][org]
        if not future.done():
            future.cancel()
        self._gauge(pool)

    def _gauge(self, pool: str) -> None:
        if self._metrics is not None:
            self._metrics.queue_depth.labels(pool).set(self.depth(pool))
