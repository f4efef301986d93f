"""The cache on the request path: which requests take part, Cache-Control, collapsed misses,
hit billing, and the settings that build it."""

from __future__ import annotations

import anyio
import pytest

from llmgw.cache.lookup import BYPASS, Lookup, ResponseCache, directives
from llmgw.cache.store import AnswerStore, CachedAnswer
from llmgw.endpoints import BY_NAME
from llmgw.observability.metrics import Metrics
from llmgw.observability.trace import Trace

MSG = [{"role": "user", "content": "hi"}]
CHAT = {"model": "tiny-chat", "messages": MSG, "temperature": 0, "max_tokens": 8}


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def _store(clock, **kw) -> AnswerStore:
    return AnswerStore(**{"ttl_secs": 60, "max_entries": 100, "max_entry_bytes": 1024, "clock": clock, **kw})


def _cache(clock, **kw) -> ResponseCache:
    return ResponseCache(_store(clock), Metrics(tenant_labels=False), enabled=True, bill_tokens=False, **kw)


def _trace() -> Trace:
    return Trace("rid", route="chat")


@pytest.mark.parametrize("header,expected", [
    (None, (True, True)), ("no-cache", (False, True)), ("no-store", (True, False)),
    ("No-Cache, no-store", (False, False)), ("max-age=0", (True, True)),
])


def test_cache_control_directives(header, expected):
    assert directives(header) == expected


def test_identical_concurrent_misses_make_one_call():
    clock = Clock()
    cache = _cache(clock)
    calls = []

    async def request(results):
        lookup = cache.plan("org1", BY_NAME["chat"], "Qwen", dict(CHAT), None)
        trace = _trace()
        hit = await lookup.find()
        assert trace.cache is None  # counted only once admitted
        lookup.count(trace)
        if hit is None:
            try:
                calls.append(1)
                await anyio.sleep(0.05)  # the backend
                lookup.fill(b'{"id":"x"}')
            finally:
                lookup.close()
        results.append((trace.cache, lookup.headers.get("X-Cache")))

    async def main():
        results = []
        async with anyio.create_task_group() as tg:
            for _ in range(5):
                tg.start_soon(request, results)
        return results
    results = anyio.run(main)
    assert len(calls) == 1
    assert sorted(results, key=str) == [("HIT", None)] * 4 + [("MISS", "MISS")]


def test_no_store_and_no_cache_and_non_deterministic_requests():
    cache = _cache(Clock())
    assert cache.plan("o", BY_NAME["chat"], "Qwen", {"messages": MSG}, None) is BYPASS

    async def main():
        no_store = cache.plan("o", BY_NAME["chat"], "Qwen", dict(CHAT), "no-store")
        assert await no_store.find() is None
        no_store.fill(b"{}")
        no_store.close()
        miss = cache.plan("o", BY_NAME["chat"], "Qwen", dict(CHAT), None)
        assert await miss.find() is None  # no-store kept nothing
        miss.close()  # a miss that leads must land its flight (serving does it in a finally)
        filler = cache.plan("o", BY_NAME["chat"], "Qwen", dict(CHAT), None)
        await filler.find()
        filler.fill(b"{}")
        filler.close()
        assert await cache.plan("o", BY_NAME["chat"], "Qwen", dict(CHAT), "no-cache").find() is None
        assert (await cache.plan("o", BY_NAME["chat"], "Qwen", dict(CHAT), None).find()).body == b"{}"
    anyio.run(main)


def test_disabled_cache_bypasses_everything():
    cache = ResponseCache(_store(Clock()), Metrics(tenant_labels=False), enabled=False, bill_tokens=False)
    assert cache.plan("o", BY_NAME["embeddings"], "E", {"input": "x"}, None) is BYPASS


@pytest.mark.parametrize("bill_tokens,expected", [(False, None), (True, {"prompt_tokens": 3})])
def test_hit_billing_setting(bill_tokens, expected):
    cache = ResponseCache(_store(Clock()), Metrics(tenant_labels=False), enabled=True,
                          bill_tokens=bill_tokens)
    lookup = cache.plan("o", BY_NAME["embeddings"], "E", {"input": "x"}, None)
    assert isinstance(lookup, Lookup)
    assert lookup.billed_usage(CachedAnswer(b'{"usage":{"prompt_tokens":3}}', 0)) == expected


@pytest.mark.parametrize("var,value", [("CACHE_TTL_SECS", "0"), ("CACHE_MAX_ENTRIES", "0"),
                                       ("CACHE_MAX_ENTRY_BYTES", "10"), ("CACHE_HIT_BILLING", "free"),
                                       ("CACHE_REDIS", "maybe"), ("GZIP_MIN_BYTES", "-1")])


def test_bad_cache_settings_stop_start_up(monkeypatch, var, value):
    from llmgw.settings import load_settings
    monkeypatch.setenv(var, value)
    with pytest.raises(SystemExit) as exc:
        load_settings()
    assert var in str(exc.value)
