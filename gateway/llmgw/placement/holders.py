"""Which backends this worker sent each bound key to lately, besides its first choice.

A key's first choice (its rendezvous top) holds its prefix by construction. When load spills a
key elsewhere, that backend now holds the prefix too: its prefill is paid. Remembering it lets
a hot key spread over the replicas that already cache it, by load, instead of piling onto its
first choice up to the load bound and paying a fresh prefill on every spill. The memory is per
worker and approximate (a holder may have evicted the blocks since), bounded in keys and
forgotten after `ttl` seconds without a request sent there.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable

DEFAULT_TTL_SECS = 60.0
DEFAULT_MAX_KEYS = 4096


class KeyHolders:
    """key -> {backend name: when this worker last sent the key there}, least recent first."""

    def __init__(self, *, ttl: float = DEFAULT_TTL_SECS, max_keys: int = DEFAULT_MAX_KEYS,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._ttl, self._max_keys, self._clock = ttl, max_keys, clock
        self._held: OrderedDict[int, dict[str, float]] = OrderedDict()

    def of(self, key: int) -> frozenset[str]:
        """The backends besides the first choice that likely hold the key's prefix."""
        held = self._held.get(key)
        if not held:
            return frozenset()
        cutoff = self._clock() - self._ttl
        fresh = frozenset(name for name, at in held.items() if at >= cutoff)
        if len(fresh) < len(held):
            for name in held.keys() - fresh:
                del held[name]
            if not held:
                del self._held[key]
        return fresh

    def note(self, key: int, name: str) -> None:
        """The key was just sent to `name` (not its first choice)."""
        held = self._held.get(key)
        if held is None:
            held = self._held[key] = {}
            if len(self._held) > self._max_keys:
                self._held.popitem(last=False)
        else:
            self._held.move_to_end(key)
        held[name] = self._clock()

    def __len__(self) -> int:
        return len(self._held)
