"""Each worker's last answer from Redis per API key: what it authenticates from while Redis
cannot be asked."""

from __future__ import annotations

from collections import OrderedDict
from typing import Generic, TypeVar

T = TypeVar("T")


class LastKnown(Generic[T]):
    """Answers by key digest, each tagged with its organisation, the least recently used
    dropped beyond `size`.

    Kept across lost subscriptions and Redis restarts (dropping them is what made known keys
    unknowable in the next outage); an invalidation removes only its organisation's answers.
    Indexed by organisation too, as every invalidation message forgets one organisation on
    the event loop: that costs its own keys, not a scan of all `size` entries.
    """

    def __init__(self, size: int) -> None:
        self._size = size
        self._entries: OrderedDict[str, tuple[str, T]] = OrderedDict()  # digest -> (org, answer)
        self._by_org: dict[str, set[str]] = {}

    def get(self, digest: str) -> T | None:
        found = self._entries.get(digest)
        if found is None:
            return None
        self._entries.move_to_end(digest)
        return found[1]

    def put(self, digest: str, org_id: str, answer: T) -> None:
        self.forget(digest)  # a key's organisation never changes, but the index must not lie
        self._entries[digest] = (org_id, answer)
        self._by_org.setdefault(org_id, set()).add(digest)
        while len(self._entries) > self._size:
            self._unindex(*self._entries.popitem(last=False))

    def forget(self, digest: str) -> None:
        found = self._entries.pop(digest, None)
        if found is not None:
            self._unindex(digest, found)

    def forget_org(self, org_id: str) -> list[str]:
        """Remove the organisation's answers; returns their digests, to be asked again."""
        digests = list(self._by_org.pop(org_id, ()))
        for d in digests:
            del self._entries[d]
        return digests

    def digests(self) -> list[str]:
        return list(self._entries.keys())

    def _unindex(self, digest: str, found: tuple[str, T]) -> None:
        keys = self._by_org.get(found[0])
        if keys is not None:
            keys.discard(digest)
            if not keys:
                del self._by_org[found[0]]
