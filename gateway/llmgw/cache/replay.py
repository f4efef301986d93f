"""Replaying a cached answer as the SSE stream a backend would have sent (OpenAI / vLLM
chunk format): role, content, finish reason, usage if asked, then [DONE]."""

from __future__ import annotations

import orjson

from ..sse import DONE


def _event(chunk: dict) -> bytes:
    return b"data: " + orjson.dumps(chunk) + b"\n\n"


def _delta(message: dict) -> dict:
    """What a message says beyond its role, as one delta (tool calls get their stream index)."""
    delta = {}
    for name, value in message.items():
        if name == "role" or value is None:
            continue
        if name == "tool_calls":
            value = [{"index": i, **call} for i, call in enumerate(value)]
        delta[name] = value
    return delta


def _chat_chunks(head: dict, choice: dict) -> list[dict]:
    i, message = choice.get("index", 0), choice.get("message") or {}
    role = {"index": i, "delta": {"role": message.get("role", "assistant"), "content": ""},
            "logprobs": None, "finish_reason": None}
    body = {"index": i, "delta": _delta(message), "logprobs": choice.get("logprobs"),
            "finish_reason": None}
    end = {"index": i, "delta": {}, "logprobs": None, "finish_reason": choice.get("finish_reason")}
    return [{**head, "choices": [c]} for c in (role, body, end)]


def _text_chunks(head: dict, choice: dict) -> list[dict]:
    i = choice.get("index", 0)
    body = {"index": i, "text": choice.get("text", ""), "logprobs": choice.get("logprobs"),
            "finish_reason": None}
    end = {"index": i, "text": "", "logprobs": None, "finish_reason": choice.get("finish_reason")}
    return [{**head, "choices": [c]} for c in (body, end)]


def sse_events(events: str, answer: dict, *, include_usage: bool) -> bytes:
    """The whole stream of one cached chat or completion answer (`events`: "chat" or
    "completion", its endpoint's chunk format), ending with [DONE]."""
    chat = events == "chat"
    head = {"id": answer.get("id"), "object": "chat.completion.chunk" if chat else "text_completion",
            "created": answer.get("created"), "model": answer.get("model")}
    if answer.get("system_fingerprint") is not None:
        head["system_fingerprint"] = answer["system_fingerprint"]
    chunks = []
    for choice in answer.get("choices") or []:
        chunks += _chat_chunks(head, choice) if chat else _text_chunks(head, choice)
    if include_usage and answer.get("usage") is not None:
        chunks.append({**head, "choices": [], "usage": answer["usage"]})
    return b"".join(_event(c) for c in chunks) + DONE
