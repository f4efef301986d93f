"""Replaying a cached answer as the SSE stream a backend would have sent."""

from __future__ import annotations

import orjson

from llmgw.cache.collect import StreamCollector
from llmgw.cache.replay import sse_events

HEAD = {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 7, "model": "Qwen"}


def _chunks():
    return [{**HEAD, "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""},
                                  "logprobs": None, "finish_reason": None}]},
            {**HEAD, "choices": [{"index": 0, "delta": {"content": "Hel"}, "logprobs": None,
                                  "finish_reason": None}]},
            {**HEAD, "choices": [{"index": 0, "delta": {"content": "lo"}, "logprobs": None,
                                  "finish_reason": "stop"}]}]


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
