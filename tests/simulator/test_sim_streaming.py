"""SSE event sequences (vLLM 0.32's), usage variants, timing, and the SDK's view of a stream."""

from __future__ import annotations

import json
import time

import openai
import pytest

pytestmark = pytest.mark.timeout(20)
MSGS = [{"role": "user", "content": "Count please."}]


def events(sim, path: str, body: dict) -> list:
    """Raw SSE events of one streamed request; [DONE] is kept as the string."""
    with sim.http.stream("POST", path, json={**body, "stream": True}) as r:
        assert r.status_code == 200
        assert r.headers["content-type"] == "text/event-stream; charset=utf-8"
        assert r.headers["transfer-encoding"] == "chunked"
        raw = r.read().decode()
    out = []
    for block in raw.split("\n\n"):
        if block:
            assert block.startswith("data: ")
            data = block[len("data: "):]
            out.append(data if data == "[DONE]" else json.loads(data))
    return out


def test_chat_stream_sequence_without_usage(chat_sim):
    evs = events(chat_sim, "/v1/chat/completions", {"messages": MSGS, "max_tokens": 4})
    first, *tokens, last_done = evs
    assert last_done == "[DONE]" and len(tokens) == 4
    assert first["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert first["object"] == "chat.completion.chunk" and first["prompt_token_ids"] is None
    assert all("usage" not in e for e in evs[:-1])
    assert [t["choices"][0]["finish_reason"] for t in tokens] == [None, None, None, "length"]
    assert "system_fingerprint" in tokens[-1] and "system_fingerprint" not in tokens[0]
    assert len({e["id"] for e in evs[:-1]}) == 1
    full = chat_sim.post("/v1/chat/completions", {"messages": MSGS, "max_tokens": 4}).json()
    assert "".join(t["choices"][0]["delta"]["content"] for t in tokens) == full["choices"][0]["message"]["content"]


def test_chat_stream_include_usage_adds_final_usage_chunk(chat_sim):
    evs = events(chat_sim, "/v1/chat/completions",
                 {"messages": MSGS, "max_tokens": 3, "stream_options": {"include_usage": True}})
    *chunks, usage_chunk, done = evs
    assert done == "[DONE]" and len(chunks) == 4
    assert usage_chunk["choices"] == [] and usage_chunk["system_fingerprint"].startswith("vllm-")
    usage = usage_chunk["usage"]
    assert list(usage) == ["prompt_tokens", "total_tokens", "completion_tokens"] and usage["completion_tokens"] == 3
    assert all("usage" not in c and "system_fingerprint" not in c for c in chunks)


def test_chat_stream_continuous_usage(chat_sim):
    evs = events(chat_sim, "/v1/chat/completions",
                 {"messages": MSGS, "max_tokens": 3,
                  "stream_options": {"include_usage": True, "continuous_usage_stats": True}})
    assert [e["usage"]["completion_tokens"] for e in evs[:-1]] == [0, 1, 2, 3, 3]
    assert evs[0]["usage"]["completion_tokens_details"] is None


def test_chat_stream_n2_interleaves_choices(chat_sim):
    evs = events(chat_sim, "/v1/chat/completions", {"messages": MSGS, "max_tokens": 2, "n": 2})
    indexes = [e["choices"][0]["index"] for e in evs[:-1]]
    assert indexes == [0, 1, 0, 1, 0, 1]
    assert [e["choices"][0]["finish_reason"] for e in evs[4:6]] == ["length", "length"]


def test_completions_stream_sequence(chat_sim):
    evs = events(chat_sim, "/v1/completions",
                 {"prompt": "Once upon", "max_tokens": 3, "stream_options": {"include_usage": True}})
    *tokens, usage_chunk, done = evs
    assert done == "[DONE]" and len(tokens) == 3 and usage_chunk["choices"] == []
    assert list(tokens[0]["choices"][0]) == ["index", "text", "logprobs", "finish_reason", "stop_reason",
                                             "prompt_token_ids", "token_ids"]
    assert tokens[-1]["choices"][0]["finish_reason"] == "length"
    assert usage_chunk["usage"]["prompt_tokens"] == 2


def test_sdk_stream_with_usage(chat_sim):
    client = openai.OpenAI(base_url=chat_sim.url + "/v1", api_key="x", max_retries=0)
    stream = client.chat.completions.create(model="sim-chat", messages=MSGS, max_tokens=5, stream=True,
                                            stream_options={"include_usage": True})
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert len(text.split()) == 5 and chunks[-1].usage.completion_tokens == 5


def test_stream_timing_follows_ttft_and_itl(start_sim):
    sim = start_sim("--ttft-ms", "150", "--itl-ms", "40")
    arrivals = []
    t0 = time.perf_counter()
    with sim.http.stream("POST", "/v1/chat/completions",
                         json={"messages": MSGS, "max_tokens": 6, "stream": True}) as r:
        for line in r.iter_lines():
            if line.startswith("data: "):
                arrivals.append(time.perf_counter() - t0)
    # role + first token at TTFT, then one event per inter-token gap (vLLM streams per token).
    assert 0.14 <= arrivals[1] < 0.4
    gaps = [b - a for a, b in zip(arrivals[1:6], arrivals[2:7])]
    assert sum(0.03 <= g < 0.25 for g in gaps) >= 4, gaps  # one gap may be squeezed by client jitter
    assert arrivals[6] - arrivals[1] >= 5 * 0.04 * 0.95
