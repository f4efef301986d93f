"""The answer store: the local TTL tier, its size limits, and the shared Redis tier."""

from __future__ import annotations

import anyio

from llmgw.background import BackgroundTasks
from llmgw.cache.store import AnswerStore
from llmgw.keyspace import cache_entry
from llmgw.observability.metrics import Metrics


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def _store(clock, **kw) -> AnswerStore:
    return AnswerStore(**{"ttl_secs": 60, "max_entries": 100, "max_entry_bytes": 1024, "clock": clock, **kw})


def test_entries_expire_after_the_ttl():
    clock = Clock()
    store = _store(clock)
    store.put("o", "k", b'{"a":1}')
    clock.now += 59.9
    assert store.get_local("k").body == b'{"a":1}'
    clock.now += 0.2
    assert store.get_local("k") is None


def test_oversized_answers_and_overflow_are_not_kept():
    clock = Clock()
    store = _store(clock, max_entries=2)
    assert store.put("o", "big", b"x" * 1025).body == b"x" * 1025  # still returned to the caller
    assert store.get_local("big") is None
    for k in ("a", "b", "c"):
        store.put("o", k, b"{}")
    assert [store.get_local(k) is not None for k in ("a", "b", "c")] == [False, True, True]


class FakeRedis:
    """The two calls the shared tier makes; values as a decode_responses client returns them."""

    def __init__(self, fail: bool = False) -> None:
        self.data: dict[str, tuple[str, int]] = {}
        self.fail = fail

    async def get(self, name):
        if self.fail:
            raise ConnectionError("down")
        return self.data.get(name, (None, 0))[0]

    async def set(self, name, value, px):
        if self.fail:
            raise ConnectionError("down")
        self.data[name] = (value, px)


def test_redis_tier_is_shared_and_keeps_the_original_expiry():
    clock, redis = Clock(), FakeRedis()

    async def main():
        tasks = BackgroundTasks()
        writer, reader = _store(clock, redis=redis, tasks=tasks), _store(clock, redis=redis, tasks=tasks)
        writer.put("org1", "k", b'{"answer":"\xc3\xa9"}')
        await tasks.wait()
        assert redis.data[cache_entry("org1", "k")][1] == 60_000
        clock.now += 30
        found = await reader.get("org1", "k")
        assert found.body == b'{"answer":"\xc3\xa9"}'
        assert reader.get_local("k") is not None  # copied into the local tier...
        clock.now += 30.1
        assert reader.get_local("k") is None       # ...with the deadline it had in Redis
        assert await reader.get("org1", "k") is None
        redis.data[cache_entry("org1", "odd")] = ("not written by the gateway", 1)
        assert await reader.get("org1", "odd") is None
    anyio.run(main)


def test_redis_failures_read_as_misses_and_are_counted():
    clock, metrics = Clock(), Metrics(tenant_labels=True)

    async def main():
        tasks = BackgroundTasks()
        store = _store(clock, redis=FakeRedis(fail=True), tasks=tasks, metrics=metrics)
        assert await store.get("o", "missing") is None
        store.put("o", "k", b"{}")
        await tasks.wait()
        assert (await store.get("o", "k")).body == b"{}"  # the local tier still works
    anyio.run(main)
    value = lambda op: metrics.registry.get_sample_value("llmgw_redis_errors_total", {"op": op})  # noqa: E731
    assert value("cache_get") == 1 and value("cache_set") == 1
