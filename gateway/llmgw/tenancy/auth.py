"""Authenticating a request's API key: shape check, digest lookup, an invalidated cache, verdict."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from cachetools import TTLCache
from redis.exceptions import RedisError

from ..batches.item import BatchItem
from ..errors import InvalidApiKey, PermissionDenied, StateUnavailable
from ..single_flight import SingleFlight
from .apikeys import bearer_token, digest, same_digest, well_formed
from .last_known import LastKnown
from .limits import Limits
from .model_access import allows
from .records import ApiKeyRecord, Org, KeyScope
from .store import TenancyStore


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: the organisation, the key's public id, its scopes and effective limits."""
    org_id: str
    org_name: str
    key_id: str
    scopes: frozenset[KeyScope]
    limits: Limits          # in force for this key: the organisation's, narrowed by the key's
    org_limits: Limits      # the organisation's (its own values over the platform defaults)
    key_limits: Limits      # only what the key itself sets
    timezone: str = "UTC"   # calendar days and months of quotas
    org_models: tuple[str, ...] | None = None  # model patterns (model_access.py); None: all
    key_models: tuple[str, ...] | None = None
    batch: BatchItem | None = None  # a batch runner's line, on the key that created the job

    def require(self, scope: KeyScope) -> None:
        if scope not in self.scopes:
            raise PermissionDenied(f"this API key lacks the '{scope.value}' scope")

    @property
    def restricted(self) -> bool:
        """Is the key limited to some models (by its organisation or itself)?"""
        return self.org_models is not None or self.key_models is not None

    def may_use(self, names: Sequence[str]) -> bool:
        """May this key call the model with these names (its name, then its aliases)?"""
        return allows(self.org_models, names) and allows(self.key_models, names)


@dataclass(frozen=True, slots=True)
class _Entry:
    principal: Principal
    revoked: bool
    expires_at: float | None
    suspended: bool


class Authenticator:
    """Turns an Authorization header into a Principal or the right 401/403.

    Lookups are cached per worker while the invalidation subscription is up, and the cache is
    dropped whenever any worker or replica publishes an invalidation (revocation, rotation,
    suspension), so a revoked key stops working everywhere within a second.
    """

    # Digests asked per pipelined round trip when revalidating: small enough to stay well
    # inside REDIS_TIMEOUT_SECS, which is set for single lookups.
    REVALIDATE_BATCH = 50

    def __init__(self, store: TenancyStore, defaults: Limits, *, clock: Callable[[], float],
                 cache_ttl: float, cache_size: int = 10_000) -> None:
        self._store = store
        self._defaults = defaults
        self._clock = clock
        self._cache: TTLCache | None = (TTLCache(cache_size, cache_ttl, timer=clock)
                                        if cache_ttl else None)
        # Used only when Redis cannot be asked (stale-if-error), so the fail-open limiter
        # policy keeps serving known keys through a Redis outage.
        self._last_known: LastKnown[_Entry] = LastKnown(cache_size)
        # Bumped by every invalidation and resubscription: an answer fetched across one may
        # predate it, so it is returned but not remembered.
        self._generation = 0
        self._subscriptions = 0  # counts (re)subscriptions: a revalidation pass ends with its own
        self.caching = False  # on only while the invalidation listener is subscribed
        self._lookups: SingleFlight[_Entry | None] = SingleFlight()

    def subscribed(self) -> list[str]:
        """The listener is (again) subscribed. Invalidations may have been missed while it was
        not, so the digests known so far are returned to be revalidated once. They stay in use
        meanwhile, when Redis cannot be asked (dropping them made every known key fail in the
        next outage). So a key revoked while Redis was up but out of this worker's reach (a
        network partition) is served from them until a revalidation gets Redis's answer; with
        Redis down, no revocation can be written at all."""
        self._drop_cache()
        self._subscriptions += 1
        self.caching = True
        return self._last_known.digests()

    def unsubscribed(self) -> None:
        """No invalidation can reach this worker: stop caching until subscribed again."""
        self.caching = False
        self._drop_cache()

    def invalidated(self, org_id: str) -> list[str]:
        """Something of this organisation changed: its last answers go at once (a revoked key
        must not be served from them in a later outage); returns their digests to refetch."""
        self._drop_cache()
        return self._last_known.forget_org(org_id)

    def _drop_cache(self) -> None:
        self._generation += 1
        if self._cache is not None:
            self._cache.clear()

    async def revalidate(self, digests: list[str], *, retry_secs: float = 1.0) -> None:
        """Ask Redis again about these keys and remember its answers. While Redis cannot
        answer (still loading its data after a restart, say) the last answers stand and the
        pass retries, for as long as this subscription lasts; the next one starts afresh."""
        subscription, i = self._subscriptions, 0
        while i < len(digests) and self.caching and subscription == self._subscriptions:
            batch = digests[i:i + self.REVALIDATE_BATCH]
            generation = self._generation
            try:
                found = await self._store.lookup_many(batch)
            except (RedisError, OSError, TimeoutError):
                await asyncio.sleep(retry_secs)
                continue
            if generation != self._generation:
                continue  # an invalidation arrived meanwhile: these answers may predate it
            # A record that does not parse comes back as None, like a missing one: that key
            # is forgotten (fail closed) while the rest of the batch is still brought up to date.
            for key_digest, record in zip(batch, found):
                self._remember(key_digest, self._answer(key_digest, record))
            i += self.REVALIDATE_BATCH

    def _remember(self, key_digest: str, entry: _Entry | None) -> None:
        if entry is None:
            self._last_known.forget(key_digest)
        else:
            self._last_known.put(key_digest, entry.principal.org_id, entry)

    def _answer(self, key_digest: str, found: tuple[ApiKeyRecord, Org] | None) -> _Entry | None:
        if found is None or not same_digest(found[0].digest, key_digest):
            return None
        key, org = found
        org_limits = org.limits.over(self._defaults)
        principal = Principal(org.id, org.name, key.key_id, frozenset(key.scopes),
                              key.limits.narrowed_by(org_limits), org_limits, key.limits,
                              org.timezone, _patterns(org.models), _patterns(key.models))
        return _Entry(principal, key.status == "revoked", key.expires_at, org.status == "suspended")

    async def _lookup(self, key_digest: str) -> _Entry | None:
        use_cache = self.caching and self._cache is not None
        if use_cache and (hit := self._cache.get(key_digest)) is not None:
            return hit
        # A burst with a key not yet cached makes one lookup, not hundreds.
        return await asyncio.shield(
            self._lookups.run(key_digest, lambda: self._fetch(key_digest, use_cache)))

    async def _fetch(self, key_digest: str, use_cache: bool) -> _Entry | None:
        generation = self._generation
        try:
            found = await self._store.lookup(key_digest)
        except (RedisError, OSError, TimeoutError):
            stale = self._last_known.get(key_digest)
            if stale is None:
                raise StateUnavailable() from None
            return stale
        entry = self._answer(key_digest, found)
        if generation != self._generation:
            return entry  # an invalidation arrived meanwhile: answer, but keep nothing
        self._remember(key_digest, entry)
        if use_cache and entry is not None:
            self._cache[key_digest] = entry
        return entry

    async def authenticate(self, authorization: str | None) -> Principal:
        return await self.authenticate_key(bearer_token(authorization))

    async def authenticate_key(self, token: str | None) -> Principal:
        """The key itself, however it was sent (a Bearer token, or Anthropic's x-api-key)."""
        if token is None or not well_formed(token):
            raise InvalidApiKey()
        return await self.authenticate_digest(digest(token))

    async def authenticate_digest(self, key_digest: str) -> Principal:
        """The key by its digest (a batch job keeps the digest of the key that created it)."""
        entry = await self._lookup(key_digest)
        if entry is None or entry.revoked:
            raise InvalidApiKey()
        if entry.expires_at is not None and entry.expires_at <= self._clock():
            raise InvalidApiKey("Invalid API key: this key has expired.")
        if entry.suspended:
            raise PermissionDenied("this organisation is suspended", code="org_suspended")
        return entry.principal


def _patterns(models: list[str] | None) -> tuple[str, ...] | None:
    return None if models is None else tuple(models)
