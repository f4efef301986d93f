"""Suspect backends: the ones whose latest attempt failed, held back from first tries for a while."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable


class Suspects:
    """A backend whose latest attempt failed (5xx, timeout, refused or dropped connection) is
    suspect until it serves a request or `hold_secs` pass: a soft, per-worker outlier ejection.

    Suspicion only orders the choice, it never refuses: a suspect backend gets no first try
    while a sound backend of its pool has a free slot, and a retry onto a suspect is no free
    failover (it spends the retry budget). With no sound backend left (a pool of one, or the
    whole pool failing) suspects serve as before, and the breakers decide. One failure is
    enough here because it costs nothing but balance; the breakers, which do refuse, still
    wait for CIRCUIT_FAILURE_THRESHOLD. After the hold a suspect gets first tries again: if it
    fails once more it is held again, so a failing replica gets about one first try per hold
    per worker until its breaker opens.
    """

    def __init__(self, hold_secs: float, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._hold, self._clock = hold_secs, clock
        self._failed_at: dict[str, float] = {}  # backend -> its latest failure, no success since

    def failed(self, name: str) -> None:
        """An attempt on `name` failed before the client got anything from it."""
        self._failed_at[name] = self._clock()

    def served(self, name: str) -> None:
        """`name` answered (a 200, or a client's 4xx: the backend itself is fine), or came
        back into rotation through a passing health check."""
        if self._failed_at:  # the usual case, nothing suspect: one test per request
            self._failed_at.pop(name, None)

    def suspect(self, name: str) -> bool:
        failed_at = self._failed_at.get(name)
        if failed_at is None:
            return False
        if self._clock() - failed_at < self._hold:
            return True
        del self._failed_at[name]  # held long enough: a first try may find it well again
        return False

    def among(self, names: Iterable[str]) -> frozenset[str]:
        """The suspects among `names` (empty at once when nothing is suspect)."""
        if not self._failed_at:
            return frozenset()
        return frozenset(name for name in names if self.suspect(name))

    def snapshot(self) -> dict[str, bool]:
        return {name: True for name in list(self._failed_at) if self.suspect(name)}
