"""Each worker's last answer from Redis per API key: what it authenticates from while Redis cannot be asked."""

from __future__ import annotations

from typing import Generic, TypeVar

from cachetools import LRUCache

T = TypeVar("T")


class LastKnown(Generic[T]):
    """Answers by key digest, each tagged with its organisation.

    Kept across lost subscriptions and Redis restarts (dropping them is what made known keys
    unknowable in the next outage); an invalidation removes only its organisation's answers.
    """

    def __init__(self, size: int) -> None:
        self._entries: LRUCache = LRUCache(size)  # digest -> (org id, answer)

    def get(self, digest: str) -> T | None:
        found = self._entries.get(digest)
        return None if found is None else found[1]

    def put(self, digest: str, org_id: str, answer: T) -> None:
        self._entries[digest] = (org_id, answer)

    def forget(self, digest: str) -> None:
        self._entries.pop(digest, None)

    def forget_org(self, org_id: str) -> list[str]:
        """Remove the organisation's answers; returns their digests, to be asked again."""
        digests = [d for d, (org, _answer) in list(self._entries.items()) if org == org_id]
        for d in digests:
            del self._entries[d]
        return digests

    def digests(self) -> list[str]:
        return list(self._entries.keys())
