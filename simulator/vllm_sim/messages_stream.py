"""A Messages request run by the app's Engine as chat, its answer converted as vLLM 0.32 does
(AnthropicServingMessages.messages_full_converter and message_stream_converter).

The non-streamed body is the chat body converted: `type: message`, content blocks (text, then
tool_use), stop_reason, usage as input/output tokens, nulls left out. The stream is the chat
chunk stream (usage on every chunk) converted event by event: the first chunk becomes
`message_start` with the prompt's usage, content and tool-call deltas become content blocks,
the usage-only chunk `message_delta` (stop reason, final usage), and `[DONE]` `message_stop`.
Each event is `event: <type>\\ndata: <json>\\n\\n`, its keys in vLLM's model order.
"""

from __future__ import annotations

import json

import orjson

from .inference import _STEP, Engine


def _sse(obj: dict) -> bytes:
    return b"event: %s\ndata: %s\n\n" % (obj["type"].encode(), orjson.dumps(obj))


def _usage(usage: dict | None) -> dict:
    """_build_anthropic_usage (no prompt-token details here)."""
    if not usage:
        return {"input_tokens": 0, "output_tokens": 0}
    return {"input_tokens": max(0, usage["prompt_tokens"]), "output_tokens": usage.get("completion_tokens") or 0}


def stop_reason(finish: str | None, matched, tool_used: bool, tool_complete: bool) -> tuple:
    """_to_anthropic_stop_reason: (stop_reason, stop_sequence)."""
    if finish == "length":
        return "max_tokens", None
    if finish not in ("stop", "tool_calls"):
        return None, None
    if tool_complete:
        return "tool_use", None
    if isinstance(matched, str):
        return "stop_sequence", matched
    if finish == "tool_calls" or tool_used:
        return "tool_use", None
    return "end_turn", None


def message_body(chat: dict) -> dict:
    """messages_full_converter, dumped with exclude_none."""
    choice, content = chat["choices"][0], []
    msg = choice["message"]
    calls = msg.get("tool_calls") or []
    reason, matched = stop_reason(choice["finish_reason"], choice.get("stop_reason"), bool(calls), bool(calls))
    if msg.get("content"):
        content.append({"type": "text", "text": msg["content"]})
    for call in calls:
        args = json.loads(call["function"]["arguments"])
        content.append({"type": "tool_use", "id": call["id"], "name": call["function"]["name"],
                        "input": args if isinstance(args, dict) else {}})
    body = {"id": chat["id"], "type": "message", "role": "assistant", "content": content or [{"type": "text", "text": ""}],
            "model": chat["model"], "stop_reason": reason}
    if matched is not None:
        body["stop_sequence"] = matched
    body["usage"] = _usage(chat.get("usage"))
    return body


class StreamConverter:
    """message_stream_converter's state: feed it each chat chunk, get the Messages events."""

    def __init__(self):
        self.first = True
        self.index = 0  # the next content block's index
        self.block: str | None = None  # the open block's type
        self.tool_id: str | None = None  # the open tool_use block's id
        self.pending: list[str] = []  # text that came while a tool_use block was open
        self.finish = self.matched = None
        self.tool_used = False
        self.last_args: list[str] = []
        self.ids: dict[int, str] = {}

    def feed(self, chunk) -> list[dict]:
        if chunk == "[DONE]":
            return self._flush() + [{"type": "message_stop"}]
        if self.first:
            self.first = False
            return [{"type": "message_start", "message": {
                "id": chunk["id"], "type": "message", "role": "assistant", "content": [], "model": chunk["model"],
                "stop_reason": None, "stop_sequence": None, "usage": _usage(chunk.get("usage"))}}]
        if not chunk["choices"]:
            complete = self.tool_used and _is_json("".join(self.last_args))
            reason, matched = stop_reason(self.finish or "stop", self.matched, self.tool_used, complete)
            return self._flush() + [{"type": "message_delta", "delta": {"stop_reason": reason, "stop_sequence": matched},
                                     "usage": _usage(chunk.get("usage"))}]
        choice = chunk["choices"][0]
        if choice.get("finish_reason") is not None:
            self.finish, self.matched = choice["finish_reason"], choice.get("stop_reason")
        delta = choice.get("delta") or {}
        events = self._text(delta.get("content"))
        for call in delta.get("tool_calls") or ():
            events += self._tool_call(call)
        return events

    def _stop(self) -> list[dict]:
        if self.block is None:
            return []
        event = {"type": "content_block_stop", "index": self.index}
        self.block, self.tool_id = None, None
        self.index += 1
        return [event]

    def _start(self, block: dict) -> dict:
        self.block = block["type"]
        self.tool_id = block.get("id")
        return {"type": "content_block_start", "content_block": block, "index": self.index}

    def _flush(self) -> list[dict]:
        held, self.pending = "".join(self.pending), []
        events = self._stop()
        if held:
            events += [self._start({"type": "text", "text": ""}), self._delta({"type": "text_delta", "text": held})]
            events += self._stop()
        return events

    def _delta(self, delta: dict) -> dict:
        return {"type": "content_block_delta", "delta": delta, "index": self.index}

    def _text(self, text: str | None) -> list[dict]:
        if not text:
            return []
        if self.block == "tool_use":
            self.pending.append(text)
            return []
        events = [] if self.block == "text" else self._flush() + [self._start({"type": "text", "text": ""})]
        return events + [self._delta({"type": "text_delta", "text": text})]

    def _tool_call(self, call: dict) -> list[dict]:
        function = call.get("function") or {}
        args, events = function.get("arguments"), []
        if call.get("id") is not None:
            self.ids[call["index"]] = call["id"]
            if self.tool_id != call["id"] and function.get("name") is not None:
                events = self._flush()
                self.tool_used, self.last_args = True, []
                events.append(self._start({"type": "tool_use", "id": call["id"], "name": function["name"], "input": {}}))
            current = call["id"]
        else:
            current = self.ids.get(call.get("index"))
        if args and current is not None and self.tool_id == current:
            self.last_args.append(args)
            events.append(self._delta({"type": "input_json_delta", "partial_json": args}))
        return events


def _is_json(text: str) -> bool:
    try:
        json.loads(text)
    except json.JSONDecodeError:
        return False
    return True


class MessagesEngine(Engine):
    """One Messages request on the app's Engine (same capacity, KV cache, metrics, faults and
    prefill queue); only the body and the events differ from chat."""

    def __init__(self, engine: Engine):
        self.__dict__.update(engine.__dict__)
        self._engine = engine

    def _prefill_delay(self, plan, claim, now: float) -> float:
        return self._engine._prefill_delay(plan, claim, now)  # one prefill queue per engine

    def _full_body(self, plan) -> dict:
        return message_body(super()._full_body(plan))

    def _events(self, plan):
        converter = StreamConverter()
        for kind, event in super()._events(plan):
            if kind == _STEP:
                yield kind, event
                continue
            data = event[6:].strip()
            out = converter.feed("[DONE]" if data == b"[DONE]" else orjson.loads(data))
            if out:
                yield kind, b"".join(map(_sse, out))
