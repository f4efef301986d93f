"""Engine capacity model: at most max_num_seqs sequences run at once, the rest wait FIFO.

A request may also carry a claim on other resources (KV blocks, see kv_cache.Claim): it is
admitted only when its slots fit *and* claim.admit() succeeds, and claim.free() runs on release
before waiters are woken. Like vLLM's scheduler, the queue is strict FIFO: a head that does
not fit blocks the requests behind it.
"""

from __future__ import annotations

import asyncio
from collections import deque


class Capacity:
    """Counting semaphore with strict FIFO hand-off and visible running/waiting counts."""

    def __init__(self, limit: int):
        self.limit = limit
        self.running = 0  # sequences currently holding slots
        self._waiters: deque[tuple[asyncio.Future, int, object]] = deque()  # (future, slots, claim)

    def _fits(self, slots: int, claim) -> bool:
        # admit() allocates when it succeeds, so it is only asked once the slots fit.
        return self.running + slots <= self.limit and (claim is None or claim.admit())

    def try_acquire(self, slots: int = 1, claim=None) -> int:
        """Take slots without waiting, only if nobody is queued ahead (FIFO fairness).

        Returns how many were taken (0: none; pass the number and the claim to release).
        """
        slots = min(slots, self.limit)  # n > limit must not deadlock
        if not self._waiters and self._fits(slots, claim):
            self.running += slots
            return slots
        return 0

    async def acquire(self, slots: int = 1, claim=None) -> int:
        """Wait for slots (and the claim); returns how many were taken (pass that to release)."""
        slots = min(slots, self.limit)
        if self.try_acquire(slots, claim):
            return slots
        fut = asyncio.get_running_loop().create_future()
        entry = (fut, slots, claim)
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
            fut, slots, claim = self._waiters[0]
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
