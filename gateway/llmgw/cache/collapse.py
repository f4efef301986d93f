"""Single flight: identical concurrent misses wait for one backend call instead of each
making their own."""

from __future__ import annotations

import anyio

from .store import CachedAnswer


class Flight:
    """One backend call that followers wait on. Its answer is None when the leader failed."""

    __slots__ = ("_done", "answer")

    def __init__(self) -> None:
        self._done = anyio.Event()
        self.answer: CachedAnswer | None = None

    async def wait(self) -> CachedAnswer | None:
        await self._done.wait()
        return self.answer

    def finish(self, answer: CachedAnswer | None) -> None:
        self.answer = answer
        self._done.set()


class Flights:
    """The flights in progress in this worker, by cache key.

    Collapsing is per worker: across workers and replicas the Redis tier (when on) shares
    finished answers, not calls in progress.
    """

    def __init__(self) -> None:
        self._running: dict[str, Flight] = {}

    def running(self, key: str) -> Flight | None:
        return self._running.get(key)

    def lead(self, key: str) -> Flight | None:
        """Start a flight, or None if one is already running for this key."""
        if key in self._running:
            return None
        flight = self._running[key] = Flight()
        return flight

    def land(self, key: str, flight: Flight, answer: CachedAnswer | None) -> None:
        """End a flight: its followers wake with the answer (None: they call the backend)."""
        if self._running.get(key) is flight:
            del self._running[key]
        flight.finish(answer)
