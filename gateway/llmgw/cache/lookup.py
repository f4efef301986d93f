"""The response cache as the request path uses it: which requests take part, and for each
one its lookup, its share in a collapsed call, its fill and its answer from cache."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from types import MappingProxyType

import orjson
from redis.asyncio import Redis
from starlette.responses import Response

from ..observability.trace import Trace
from ..background import BackgroundTasks
from ..observability.metrics import Metrics
from ..endpoints import EndpointSpec
from ..settings import Settings
from ..streaming import SSE_HEADERS
from .collapse import Flight, Flights
from .collect import StreamCollector
from .key import cache_key, is_deterministic
from .replay import sse_events
from .store import AnswerStore, CachedAnswer


def directives(cache_control: str | None) -> tuple[bool, bool]:
    """(may read, may write): `no-cache` skips the read, `no-store` skips the write."""
    if not cache_control:
        return True, True
    tokens = {t.strip().lower() for t in cache_control.split(",")}
    return "no-cache" not in tokens, "no-store" not in tokens


class Bypass:
    """A request the cache takes no part in: no lookup, no fill, no X-Cache header."""

    headers: Mapping[str, str] = MappingProxyType({})  # what a backend's answer carries

    async def find(self) -> CachedAnswer | None:
        return None

    def count(self, trace: Trace) -> None:
        pass

    def collector(self) -> StreamCollector | None:
        return None

    def fill(self, body: bytes) -> bytes:
        return body

    def fill_stream(self, usage: dict | None) -> None:
        pass

    def close(self) -> None:
        pass


BYPASS = Bypass()
MISS: Mapping[str, str] = MappingProxyType({"X-Cache": "MISS"})


class Lookup(Bypass):
    """One cacheable request. A non-streaming miss leads a flight that identical concurrent
    misses follow; streams neither lead nor follow (a follower would lose progressive
    delivery), but they read the cache (replayed) and fill it when they complete."""

    def __init__(self, cache: ResponseCache, org_id: str, endpoint: EndpointSpec, key: str, *,
                 read: bool, write: bool, stream: bool) -> None:
        self._cache, self.org_id, self.endpoint, self.key = cache, org_id, endpoint, key
        self.read, self.write, self.stream = read, write, stream
        self._flight: Flight | None = None
        self._filled: CachedAnswer | None = None
        self._collector: StreamCollector | None = None
        self._result = "miss"

    async def find(self) -> CachedAnswer | None:
        """The cached (or collapsed) answer, or None: then this request calls the backend,
        and its answers carry `X-Cache: MISS`. Looked up before admission, which a hit
        still goes through (it counts as a request)."""
        cache, hit = self._cache, None
        if self.read:
            hit = await cache.store.get(self.org_id, self.key)
            if hit is None and not self.stream and (flight := cache.flights.running(self.key)):
                hit = await flight.wait()  # None: the leader failed, call the backend ourselves
        if hit is None and self.write and not self.stream:
            self._flight = cache.flights.lead(self.key)
        self._result = "hit" if hit is not None else "miss"
        if hit is None:
            self.headers = MISS
        return hit

    def count(self, trace: Trace) -> None:
        """Once admitted: a request refused by admission is neither a hit nor a miss."""
        trace.cache = self._result.upper()
        self._cache.metrics.cache.labels(trace.route, self._result).inc()

    def collector(self) -> StreamCollector | None:
        if self.write:
            self._collector = StreamCollector(chat=self.endpoint.events == "chat")
        return self._collector

    def fill(self, body: bytes) -> bytes:
        """Keep a backend's answer (as sent to the client) unless `no-store`; pass it on."""
        if self.write:
            self._filled = self._cache.store.put(self.org_id, self.key, body)
        return body

    def fill_stream(self, usage: dict | None) -> None:
        """Keep a stream that completed cleanly, assembled into the non-streaming shape."""
        answer = self._collector.answer(usage) if self._collector is not None else None
        if answer is not None:
            self._cache.store.put(self.org_id, self.key, orjson.dumps(answer))

    def close(self) -> None:
        """Land this request's flight: followers get its answer, or None if it failed."""
        if self._flight is not None:
            self._cache.flights.land(self.key, self._flight, self._filled)
            self._flight = None

    def billed_usage(self, hit: CachedAnswer) -> dict | None:
        """What a hit bills: no tokens by default, the cached usage with CACHE_HIT_BILLING=tokens."""
        return self.endpoint.usage(hit.answer()) if self._cache.bill_tokens else None

    def response(self, hit: CachedAnswer, headers: dict[str, str],
                 stream_options: dict | None) -> Response:
        headers = {**headers, "X-Cache": "HIT"}
        if not self.stream:
            return Response(hit.body, media_type="application/json", headers=headers)
        asked = stream_options or {}
        usage = bool(asked.get("include_usage") or asked.get("continuous_usage_stats"))
        events = sse_events(self.endpoint.events or "chat", hit.answer(), include_usage=usage)
        return Response(events, media_type="text/event-stream", headers={**SSE_HEADERS, **headers})


class ResponseCache:
    """Decides which requests take part; owns the store and this worker's flights."""

    def __init__(self, store: AnswerStore, metrics: Metrics, *, enabled: bool,
                 bill_tokens: bool) -> None:
        self.store = store
        self.metrics = metrics
        self.flights = Flights()
        self.enabled = enabled
        self.bill_tokens = bill_tokens

    def plan(self, org_id: str, endpoint: EndpointSpec, model: str, body: dict,
             cache_control: str | None) -> Bypass:
        """The request's part in the cache. Call once the body is final (after the cost step
        fills a missing max_tokens) and before the stream options are rewritten."""
        if not self.enabled or not is_deterministic(endpoint, body):
            return BYPASS
        read, write = directives(cache_control)
        return Lookup(self, org_id, endpoint, cache_key(org_id, endpoint, model, body),
                      read=read, write=write, stream=bool(body.get("stream")))


def build_cache(settings: Settings, redis: Redis, tasks: BackgroundTasks, metrics: Metrics,
                clock: Callable[[], float]) -> ResponseCache:
    """The worker's cache from its settings; the Redis tier only with CACHE_REDIS=on."""
    store = AnswerStore(ttl_secs=settings.cache_ttl_secs, max_entries=settings.cache_max_entries,
                        max_entry_bytes=settings.cache_max_entry_bytes, clock=clock,
                        redis=redis if settings.cache_redis else None, tasks=tasks, metrics=metrics)
    return ResponseCache(store, metrics, enabled=settings.cache_enabled,
                         bill_tokens=settings.cache_hit_billing == "tokens")
