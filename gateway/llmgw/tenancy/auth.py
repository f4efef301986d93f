"""Authenticating a request's API key: shape check, digest lookup, an invalidated cache, verdict."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass

from cachetools import LRUCache, TTLCache
from redis.exceptions import RedisError

from ..errors import InvalidApiKey, PermissionDenied, StateUnavailable
from .apikeys import bearer_token, digest, same_digest, well_formed
from .limits import Limits
from .records import ApiKeyRecord, Org, Scope
from .store import TenancyStore


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: the organisation, the key's public id, its scopes and effective limits."""
    org_id: str
    org_name: str
    key_id: str
    scopes: frozenset[Scope]
    limits: Limits          # in force for this key: the organisation's, narrowed by the key's
    org_limits: Limits      # the organisation's (its own values over the platform defaults)
    key_limits: Limits      # only what the key itself sets
    timezone: str = "UTC"   # calendar days and months of quotas

    def require(self, scope: Scope) -> None:
        if scope not in self.scopes:
            raise PermissionDenied(f"this API key lacks the '{scope.value}' scope")


@dataclass(frozen=True, slots=True)
class _Entry:
    principal: Principal
    revoked: bool
    expires_at: float | None
    suspended: bool


class Authenticator:
    """Turns an Authorization header into a Principal or the right 401/403.

    Lookups are cached per worker, and the cache is dropped whenever any worker or replica
    publishes an invalidation (revocation, rotation, suspension) and whenever the
    subscription is down, so a revoked key stops working everywhere within a second.
    """

    def __init__(self, store: TenancyStore, defaults: Limits, *, clock: Callable[[], float],
                 cache_ttl: float, cache_size: int = 10_000) -> None:
        self._store = store
        self._defaults = defaults
        self._clock = clock
        self._cache: TTLCache | None = TTLCache(cache_size, cache_ttl, timer=clock) if cache_ttl else None
        # Last answer per key, used only when Redis cannot be asked (stale-if-error), so the
        # fail-open limiter policy can keep serving known keys through a Redis outage. Any
        # invalidation message empties it too: what was revoked before the outage stays revoked.
        self._last_known: LRUCache = LRUCache(cache_size)
        self.caching = False  # enabled by the invalidation listener once it is subscribed
        self._pending: dict[str, asyncio.Future] = {}

    def clear(self, *, keep_last_known: bool = False) -> None:
        if self._cache is not None:
            self._cache.clear()
        if not keep_last_known:
            self._last_known.clear()

    def _entry(self, key: ApiKeyRecord, org: Org) -> _Entry:
        org_limits = org.limits.over(self._defaults)
        principal = Principal(org.id, org.name, key.key_id, frozenset(key.scopes),
                              key.limits.narrowed_by(org_limits), org_limits, key.limits,
                              org.timezone)
        return _Entry(principal, key.status == "revoked", key.expires_at, org.status == "suspended")

    async def _lookup(self, key_digest: str) -> _Entry | None:
        use_cache = self.caching and self._cache is not None
        if use_cache and (hit := self._cache.get(key_digest)) is not None:
            return hit
        # Single flight: a burst with a key not yet cached makes one lookup, not hundreds.
        pending = self._pending.get(key_digest)
        if pending is None:
            pending = asyncio.ensure_future(self._fetch(key_digest, use_cache))
            self._pending[key_digest] = pending
            pending.add_done_callback(lambda _f: self._pending.pop(key_digest, None))
        return await asyncio.shield(pending)

    async def _fetch(self, key_digest: str, use_cache: bool) -> _Entry | None:
        try:
            found = await self._store.lookup(key_digest)
        except (RedisError, OSError, TimeoutError):
            stale = self._last_known.get(key_digest)
            if stale is None:
                raise StateUnavailable() from None
            return stale
        if found is None or not same_digest(found[0].digest, key_digest):
            return None
        entry = self._entry(*found)
        self._last_known[key_digest] = entry
        if use_cache:
            self._cache[key_digest] = entry
        return entry

    async def authenticate(self, authorization: str | None) -> Principal:
        token = bearer_token(authorization)
        if token is None or not well_formed(token):
            raise InvalidApiKey()
        entry = await self._lookup(digest(token))
        if entry is None or entry.revoked:
            raise InvalidApiKey()
        if entry.expires_at is not None and entry.expires_at <= self._clock():
            raise InvalidApiKey("Invalid API key: this key has expired.")
        if entry.suspended:
            raise PermissionDenied("this organisation is suspended", code="org_suspended")
        return entry.principal
