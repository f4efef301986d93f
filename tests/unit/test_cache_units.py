"""The response cache without a stack: keys, the determinism rule, TTL, the Redis tier,
collapsing, stream assembly and replay."""

from __future__ import annotations

import anyio
import orjson
import pytest

from llmgw.background import BackgroundTasks
from llmgw.cache.collapse import Flights
from llmgw.cache.collect import StreamCollector
from llmgw.cache.key import cache_key, is_deterministic
from llmgw.cache.lookup import BYPASS, Lookup, ResponseCache, directives
from llmgw.cache.replay import sse_events
from llmgw.cache.store import AnswerStore, CachedAnswer
from llmgw.keyspace import cache_entry
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


# ---- key and determinism ----------------------------------------------------------------
def test_delivery_fields_do_not_change_the_key():
    plain = cache_key("org1", BY_NAME["chat"], "Qwen", CHAT)
    streamed = {**CHAT, "stream": True, "stream_options": {"include_usage": True}, "user": "bob",
                "model": "qwen-alias", "n": 1, "seed": None}
    assert cache_key("org1", BY_NAME["chat"], "Qwen", streamed) == plain
    assert cache_key("org1", BY_NAME["chat"], "Qwen", {**CHAT, "temperature": 0.0}) == plain
    # key order inside the request does not matter either
    assert cache_key("org1", BY_NAME["chat"], "Qwen", dict(reversed(list(CHAT.items())))) == plain


@pytest.mark.parametrize("org,endpoint,model,change", [
    ("org2", BY_NAME["chat"], "Qwen", {}),
    ("org1", BY_NAME["text2sql"], "Qwen", {}),
    ("org1", BY_NAME["chat"], "Other", {}),
    ("org1", BY_NAME["chat"], "Qwen", {"max_tokens": 9}),
    ("org1", BY_NAME["chat"], "Qwen", {"messages": [{"role": "user", "content": "hi!"}]}),
    ("org1", BY_NAME["chat"], "Qwen", {"stop": ["x"]}),
    ("org1", BY_NAME["chat"], "Qwen", {"seed": 1}),
    ("org1", BY_NAME["chat"], "Qwen", {"top_k": 5}),  # a vLLM-only parameter counts too
])
def test_anything_that_changes_the_answer_changes_the_key(org, endpoint, model, change):
    assert cache_key(org, endpoint, model, {**CHAT, **change}) != cache_key("org1", BY_NAME["chat"], "Qwen", CHAT)


@pytest.mark.parametrize("endpoint,body,expected", [
    (BY_NAME["embeddings"], {"input": "x"}, True),
    (BY_NAME["rerank"], {"query": "q", "documents": ["d"]}, True),
    (BY_NAME["chat"], {"messages": MSG}, False),                        # default temperature samples
    (BY_NAME["chat"], {"messages": MSG, "temperature": 0}, True),
    (BY_NAME["chat"], {"messages": MSG, "temperature": 0.7}, False),
    (BY_NAME["chat"], {"messages": MSG, "temperature": 0.7, "seed": 3}, True),
    (BY_NAME["chat"], {"messages": MSG, "temperature": 0, "n": 2}, False),
    (BY_NAME["chat"], {"messages": MSG, "temperature": 0, "n": 1}, True),
    (BY_NAME["completions"], {"prompt": "p", "temperature": 0}, True),
    (BY_NAME["completions"], {"prompt": "p", "seed": None}, False),
    (BY_NAME["text2sql"], {"messages": MSG, "temperature": 0}, True),
])
def test_only_deterministic_requests_are_cached(endpoint, body, expected):
    assert is_deterministic(endpoint, body) is expected


@pytest.mark.parametrize("header,expected", [
    (None, (True, True)), ("no-cache", (False, True)), ("no-store", (True, False)),
    ("No-Cache, no-store", (False, False)), ("max-age=0", (True, True)),
])
def test_cache_control_directives(header, expected):
    assert directives(header) == expected


# ---- store --------------------------------------------------------------------------------
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


# ---- collapse and lookups -----------------------------------------------------------------
def _cache(clock, **kw) -> ResponseCache:
    return ResponseCache(_store(clock), Metrics(tenant_labels=False), enabled=True, bill_tokens=False, **kw)


def _trace() -> Trace:
    return Trace("rid", route="chat")


def test_followers_get_the_leaders_answer_or_call_themselves():
    async def main(leader_fails: bool):
        flights = Flights()
        flight = flights.lead("k")
        assert flights.lead("k") is None and flights.running("k") is flight
        answers = []

        async def follower():
            answers.append(await flights.running("k").wait())
        async with anyio.create_task_group() as tg:
            for _ in range(3):
                tg.start_soon(follower)
            await anyio.sleep(0.01)
            flights.land("k", flight, None if leader_fails else CachedAnswer(b"{}", 0))
        assert flights.running("k") is None
        return answers
    assert [a.body for a in anyio.run(main, False)] == [b"{}"] * 3
    assert anyio.run(main, True) == [None] * 3


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


# ---- stream assembly and replay -------------------------------------------------------------
HEAD = {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 7, "model": "Qwen"}


def _chunks():
    return [{**HEAD, "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""},
                                  "logprobs": None, "finish_reason": None}]},
            {**HEAD, "choices": [{"index": 0, "delta": {"content": "Hel"}, "logprobs": None,
                                  "finish_reason": None}]},
            {**HEAD, "choices": [{"index": 0, "delta": {"content": "lo"}, "logprobs": None,
                                  "finish_reason": "stop"}]}]


def test_a_streamed_chat_is_assembled_into_the_answer_shape():
    collector = StreamCollector(chat=True)
    for chunk in _chunks():
        collector.add(chunk)
    usage = {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}
    assert collector.answer(usage) == {
        "id": "chatcmpl-1", "created": 7, "model": "Qwen", "object": "chat.completion",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hello"},
                     "logprobs": None, "finish_reason": "stop"}], "usage": usage}


def test_streams_that_cannot_be_assembled_are_not_kept():
    unfinished = StreamCollector(chat=True)
    for chunk in _chunks()[:2]:
        unfinished.add(chunk)
    assert unfinished.answer(None) is None
    tools = StreamCollector(chat=True)
    tools.add({**HEAD, "choices": [{"index": 0, "delta": {"tool_calls": [{"index": 0}]},
                                    "finish_reason": "tool_calls"}]})
    assert tools.answer(None) is None


def test_a_streamed_completion_is_assembled():
    collector = StreamCollector(chat=False)
    head = {"id": "cmpl-1", "object": "text_completion", "created": 7, "model": "Qwen"}
    for text, finish in (("Once", None), (" upon", "length")):
        collector.add({**head, "choices": [{"index": 0, "text": text, "logprobs": None,
                                            "finish_reason": finish}]})
    answer = collector.answer({"total_tokens": 1})
    assert answer["choices"] == [{"index": 0, "text": "Once upon", "logprobs": None,
                                  "finish_reason": "length"}]


ANSWER = {"id": "chatcmpl-1", "object": "chat.completion", "created": 7, "model": "Qwen",
          "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hello",
                                               "refusal": None},
                       "logprobs": None, "finish_reason": "stop"}],
          "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}}


def _events(raw: bytes) -> list:
    assert raw.endswith(b"\n\n")
    return [e[6:] if e == b"data: [DONE]" else orjson.loads(e[6:]) for e in raw[:-2].split(b"\n\n")]


def test_chat_replay_framing_with_and_without_usage():
    head = {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 7, "model": "Qwen"}
    expected = [
        {**head, "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""},
                              "logprobs": None, "finish_reason": None}]},
        {**head, "choices": [{"index": 0, "delta": {"content": "Hello"}, "logprobs": None,
                              "finish_reason": None}]},
        {**head, "choices": [{"index": 0, "delta": {}, "logprobs": None, "finish_reason": "stop"}]},
    ]
    plain = sse_events("chat", ANSWER, include_usage=False)
    assert plain.startswith(b"data: {") and plain.endswith(b"data: [DONE]\n\n")
    assert _events(plain) == [*expected, b"[DONE]"]
    with_usage = _events(sse_events("chat", ANSWER, include_usage=True))
    assert with_usage == [*expected, {**head, "choices": [], "usage": ANSWER["usage"]}, b"[DONE]"]


def test_replaying_an_assembled_stream_gives_the_same_text():
    collector = StreamCollector(chat=True)
    for chunk in _chunks():
        collector.add(chunk)
    events = _events(sse_events("chat", collector.answer(None), include_usage=False))
    text = "".join(e["choices"][0]["delta"].get("content", "") for e in events[:-1])
    assert text == "Hello" and events[-2]["choices"][0]["finish_reason"] == "stop"


def test_completion_replay_and_tool_calls():
    answer = {"id": "c", "created": 1, "model": "M", "choices": [
        {"index": 0, "text": "abc", "logprobs": None, "finish_reason": "length"}]}
    events = _events(sse_events("completion", answer, include_usage=True))
    assert [e["choices"][0]["text"] for e in events[:2]] == ["abc", ""]
    assert events[0]["object"] == "text_completion" and events[1]["choices"][0]["finish_reason"] == "length"
    assert len(events) == 3  # no usage chunk: the answer had none to replay
    call = {"id": "call_1", "type": "function", "function": {"name": "f", "arguments": "{}"}}
    tool = {**ANSWER, "choices": [{"index": 0, "message": {"role": "assistant", "content": None,
                                                           "tool_calls": [call]},
                                   "finish_reason": "tool_calls"}]}
    delta = _events(sse_events("chat", tool, include_usage=False))[1]["choices"][0]["delta"]
    assert delta == {"tool_calls": [{"index": 0, **call}]}


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
