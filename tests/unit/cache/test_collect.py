"""Assembling a streamed answer into the non-streaming shape the cache keeps."""

from __future__ import annotations

from llmgw.cache.collect import StreamCollector

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
