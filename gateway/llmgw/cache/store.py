"""Where cached answers live: an in-process TTL tier per worker, and an optional Redis tier
shared by every worker and replica."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

import orjson
from cachetools import TLRUCache
from redis.asyncio import Redis
from redis.exceptions import RedisError

from .. import keyspace
from ..background import BackgroundTasks
from ..observability.metrics import Metrics

log = logging.getLogger("llmgw.cache")
REDIS_DOWN = (RedisError, OSError, TimeoutError)


@dataclass(frozen=True, slots=True)
class CachedAnswer:
    """An answer as it went to the client (JSON bytes, public model name), and when it
    expires (wall clock, so every worker and replica agrees on it)."""
    body: bytes
    expires_at: float

    def answer(self) -> dict:
        return orjson.loads(self.body)


class AnswerStore:
    """Reads the local tier first (no I/O on a hit); falls back to Redis when enabled.

    Redis is best effort: a failure reads as a miss, and writes happen in the background so
    an answer never waits for them.
    """

    def __init__(self, *, ttl_secs: float, max_entries: int, max_entry_bytes: int,
                 clock: Callable[[], float], redis: Redis | None = None,
                 tasks: BackgroundTasks | None = None, metrics: Metrics | None = None) -> None:
        self._ttl = ttl_secs
        self._max_bytes = max_entry_bytes
        self._clock = clock
        # Per-entry expiry (TLRU), so an entry copied from Redis keeps its original deadline.
        self._local: TLRUCache = TLRUCache(max_entries, lambda _k, v, _now: v.expires_at, timer=clock)
        self._redis = redis
        self._tasks = tasks
        self._metrics = metrics

    def get_local(self, key: str) -> CachedAnswer | None:
        return self._local.get(key)

    async def get(self, org_id: str, key: str) -> CachedAnswer | None:
        found = self._local.get(key)
        if found is not None or self._redis is None:
            return found
        try:
            raw = await self._redis.get(keyspace.cache_entry(org_id, key))
        except REDIS_DOWN:
            self._redis_failed("cache_get")
            return None
        expiry, _, body = (raw or "").partition("\n")
        try:
            found = CachedAnswer(body.encode(), float(expiry))
        except ValueError:  # absent, or not written by this code: a miss
            return None
        if found.expires_at <= self._clock() or not body:
            return None
        self._local[key] = found
        return found

    def put(self, org_id: str, key: str, body: bytes) -> CachedAnswer:
        """Keep an answer (unless too large) and return it, kept or not."""
        entry = CachedAnswer(body, self._clock() + self._ttl)
        if len(body) > self._max_bytes:
            return entry
        self._local[key] = entry
        if self._redis is not None and self._tasks is not None:
            self._tasks.spawn(self._put_shared(keyspace.cache_entry(org_id, key), entry))
        return entry

    async def _put_shared(self, name: str, entry: CachedAnswer) -> None:
        value = f"{entry.expires_at!r}\n{entry.body.decode()}"
        try:
            await self._redis.set(name, value, px=max(1, int(self._ttl * 1000)))
        except REDIS_DOWN:
            self._redis_failed("cache_set")

    def _redis_failed(self, op: str) -> None:
        log.debug("response cache: redis %s failed; treated as a miss", op)
        if self._metrics is not None:
            self._metrics.redis_errors.labels(op).inc()
