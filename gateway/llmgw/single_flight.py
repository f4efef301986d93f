"""Single flight: one call per key at a time; whoever asks while it runs gets the same result.

A burst that needs the same thing (a key's record, a script loaded, the cluster's slot map)
makes one call instead of one per request. The call runs as a task of its own, so a caller
that is cancelled does not cancel it for the others (callers `await asyncio.shield(...)`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

T = TypeVar("T")


class SingleFlight(Generic[T]):
    def __init__(self) -> None:
        self._running: dict[Hashable, asyncio.Future[T]] = {}

    def run(self, key: Hashable, call: Callable[[], Awaitable[T]]) -> asyncio.Future[T]:
        """The call running for `key`, started now if none is."""
        running = self._running.get(key)
        if running is None:
            running = asyncio.ensure_future(call())
            self._running[key] = running
            running.add_done_callback(lambda done: self._landed(key, done))
        return running

    def _landed(self, key: Hashable, done: asyncio.Future[T]) -> None:
        if self._running.get(key) is done:
            del self._running[key]
        if not done.cancelled():
            done.exception()  # read: a failure nobody waited for must not warn at exit
