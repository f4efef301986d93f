"""Engine capacity model: at most max_num_seqs sequences run at once, the rest wait FIFO.

A request may also carry a claim on other resources (KV blocks, see kv_cache.Claim): it is
admitted only when its slots fit *and* claim.admit() succeeds, and claim.free() runs on release
before waiters are woken. Like vLLM's scheduler, the queue is strict: a head that does not fit
blocks the requests behind it. Its order is arrival (--scheduling-policy fcfs) or, with
`by_priority` (--scheduling-policy priority), each request's `priority` (lower first), then
arrival, as vLLM's priority queue; a request's priority is ignored under fcfs, as vLLM 0.32
does. Running requests are not preempted for a waiting one of a lower value.
"""

from __future__ import annotations

import asyncio
import bisect
import itertools
from collections import deque


class Capacity:
    """Counting semaphore with strict FIFO hand-off and visible running/waiting counts."""

    def __init__(self, limit: int, by_priority: bool = False):
        self.limit = limit
        self.by_priority = by_priority
        self.running = 0  # sequences currently holding slots
        # (future, slots, claim, order): order is (priority, arrival) or (0, arrival)
        self._waiters: deque[tuple[asyncio.Future, int, object, tuple[int, int]]] = deque()
        self._arrivals = itertools.count()

    def _fits(self, slots: int, claim) -> bool:
        # admit() allocates when it succeeds, so it is only asked once the slots fit.
        return self.running + slots <= self.limit and (claim is None or claim.admit())

    def try_acquire(self, slots: int = 1, claim=None, priority: int = 0) -> int:
        """Take slots without waiting, only if nobody is queued ahead (FIFO fairness; by
        priority, nobody with a value as low or lower).

        Returns how many were taken (0: none; pass the number and the claim to release).
        """
        slots = min(slots, self.limit)  # n > limit must not deadlock
        ahead = self._waiters and (not self.by_priority or self._waiters[0][3][0] <= priority)
        if not ahead and self._fits(slots, claim):
            self.running += slots
            return slots
        return 0

    async def acquire(self, slots: int = 1, claim=None, priority: int = 0) -> int:
        """Wait for slots (and the claim); returns how many were taken (pass that to release)."""
        slots = min(slots, self.limit)
        if self.try_acquire(slots, claim, priority):
            return slots
        fut = asyncio.get_running_loop().create_future()
        order = (priority if self.by_priority else 0, next(self._arrivals))
        entry = (fut, slots, claim, order)
        if self.by_priority:
            self._waiters.insert(bisect.bisect(self._waiters, order, key=lambda w: w[3]), entry)
        else:
            self._waiters.append(entry)
        try:
            await fut
        except asyncio.CancelledError:
            if fut.done() and not fut.cancelled():
                # Slots were handed over just as we were cancelled: give them back.
                self.release(slots, claim)
            elif entry in self._waiters:
                self._waiters.remove(entry)
                self._wake()  # a smaller request behind us may fit now
            raise
        return slots

    def release(self, slots: int, claim=None) -> None:
        self.running -= slots
        if claim is not None:
            claim.free()
        self._wake()

    def _wake(self) -> None:
        while self._waiters:
            fut, slots, claim, _ = self._waiters[0]
            if fut.done():  # cancelled, its task has not run its except block yet
                self._waiters.popleft()
                continue
            if not self._fits(slots, claim):
                return
            self._waiters.popleft()
            self.running += slots
            fut.set_result(None)

    @property
    def waiting(self) -> int:
        return len(self._waiters)

    @property
    def usage(self) -> float:
        return self.running / self.limit
