"""What vLLM 0.32 makes of a tool-calling choice's text: its message, or its stream of deltas.

Ports of Hermes2ProToolParser (vllm/tool_parsers/hermes_tool_parser.py), of the parts of
DelegatingParser (vllm/parser/abstract_parser.py) that reach it, and of the chat serving rules
(vllm/entrypoints/openai/chat_completion/serving.py), for a server started with
--enable-auto-tool-choice --tool-call-parser hermes. With VLLM_ENFORCE_STRICT_TOOL_CALLING
(default on) hermes has supports_required_and_named = False, so "auto", "required" and named
choices are all parsed from the Hermes text; they differ only in content and finish_reason:
- non-streaming: content null for "auto", "" for "required"/named; finish_reason "tool_calls"
  for "auto" with a parsed call and for "required" ending with "stop", else the engine's.
- streaming: "tool_calls" once a tool-call delta was sent, unless named or cut by length.
Tool-call ids are random, "chatcmpl-tool-" + 16 hex digits (make_tool_call_id), as in vLLM.
"""

from __future__ import annotations

import json
import re

from .generate import TOOL_CALL_END, TOOL_CALL_START
from .openai_shapes import random_id

_CALL_RE = re.compile(r"<tool_call>(.*?)</tool_call>|<tool_call>(.*)", re.DOTALL)
_NAME_RE = re.compile(r'"name"\s*:\s*"([^"]+)"')
_ARGS_RE = re.compile(r'"arguments"\s*:\s*')


def tool_call_id() -> str:
    return "chatcmpl-tool-" + random_id()


def extract(text: str) -> tuple[list | None, str | None]:
    """Hermes2ProToolParser.extract_tool_calls: (tool calls or None when none parse, content)."""
    if TOOL_CALL_START not in text:
        return None, text
    try:
        found = [json.loads(a if a else b) for a, b in _CALL_RE.findall(text)]
        calls = [{"id": tool_call_id(), "type": "function",
                  "function": {"name": c["name"], "arguments": json.dumps(c["arguments"], ensure_ascii=False)}}
                 for c in found]
    except Exception:  # noqa: BLE001 - vLLM catches everything here and returns the text as content
        return None, text
    return calls, text[:text.find(TOOL_CALL_START)] or None


def message(text: str, engine_finish: str, choice: str) -> tuple[str | None, list, str]:
    """Non-streaming (content, tool_calls, finish_reason) for an "auto", "required" or "named" choice."""
    calls, content = extract(text)
    if calls:
        content = None if content is not None and not content.strip() else content
    elif choice != "auto" and (content is None or not content.strip()):
        calls, content = [], None
    if choice == "auto":
        return content, calls or [], "tool_calls" if calls else engine_finish
    finish = "tool_calls" if choice == "required" and engine_finish == "stop" else engine_finish
    return content or "", calls or [], finish


class ToolStream:
    """Hermes2ProToolParser.extract_tool_calls_streaming for one choice, plus vLLM's end-of-stream step.

    feed() takes each decode step's new text and returns vLLM's DeltaMessage as dumped with
    exclude_unset (so "content" is present, null, next to tool_calls), or None: no chunk.
    """

    def __init__(self, named: bool):
        self.named = named
        self.text = ""
        self.sent = 0  # how much of the text went out as content
        self.calls: list[dict] = []  # per call: "name" once sent, "arguments" as streamed so far
        self.streamed: list[str] = []
        self.tools_streamed = False

    def step(self, delta_text: str, engine_finish: str | None) -> tuple[dict | None, str | None]:
        """(delta, finish_reason) of one decode step; delta None means the step sends no chunk."""
        delta = self.feed(delta_text)
        if delta and delta.get("tool_calls"):
            self.tools_streamed = True
        if engine_finish is None:
            return delta, None
        self._append_unstreamed(delta)
        if self.tools_streamed and not self.named and engine_finish == "stop":
            return delta or {}, "tool_calls"
        return delta or {}, engine_finish

    def feed(self, delta_text: str) -> dict | None:
        self.text += delta_text
        content = self._content()
        deltas = []
        for i, (body, complete) in enumerate(self._bodies()):
            if i >= len(self.calls):
                self.calls.append({})
                self.streamed.append("")
            if "name" not in self.calls[i]:
                match = _NAME_RE.search(body)
                if not match:
                    break  # a later call cannot start before this one's name is known
                self.calls[i]["name"] = match.group(1)
                deltas.append({"id": tool_call_id(), "type": "function", "index": i,
                               "function": {"name": match.group(1)}})
            diff = self._args_diff(i, body, complete)
            if diff:
                deltas.append({"index": i, "function": {"arguments": diff}})
        if content or deltas:
            return {"content": content, "tool_calls": deltas} if deltas else {"content": content}
        return None

    def _content(self) -> str | None:
        """Unsent text before the first <tool_call>, holding back a possible partial tag."""
        if TOOL_CALL_START in self.text:
            end = self.text.index(TOOL_CALL_START)
        else:
            end = len(self.text) - _overlap(self.text, TOOL_CALL_START)
        if end > self.sent:
            content, self.sent = self.text[self.sent:end], end
            return content
        return None

    def _bodies(self) -> list[tuple[str, bool]]:
        """(json text, complete?) of each <tool_call> region so far."""
        out, pos = [], 0
        while (start := self.text.find(TOOL_CALL_START, pos)) != -1:
            begin = start + len(TOOL_CALL_START)
            end = self.text.find(TOOL_CALL_END, begin)
            if end != -1:
                out.append((self.text[begin:end].strip(), True))
                pos = end + len(TOOL_CALL_END)
                continue
            raw = self.text[begin:]
            cut = _overlap(raw, TOOL_CALL_END)
            body = (raw[:-cut] if cut else raw).strip()
            out.append((body, bool(body) and _is_json(body)))
            break
        return out

    def _args_diff(self, i: int, body: str, complete: bool) -> str | None:
        match = _ARGS_RE.search(body)
        if not match:
            return None
        args = body[match.end():]
        if complete:  # drop the brace that closes the call object, not the arguments
            args = args.rstrip()
            args = args[:-1].rstrip() if args.endswith("}") else args
        if len(args) <= len(self.streamed[i]):
            return None
        diff, self.streamed[i] = args[len(self.streamed[i]):], args
        self.calls[i]["arguments"] = args
        return diff

    def _append_unstreamed(self, delta: dict | None) -> None:
        """Parser.finalize_generation: the last call's unsent arguments join the last tool-call delta."""
        if not delta or not delta.get("tool_calls") or not self.calls:
            return
        args = self.calls[-1].get("arguments", {})
        expected = args if isinstance(args, str) else json.dumps(args, ensure_ascii=False)
        actual = self.streamed[-1]
        fn = delta["tool_calls"][-1]["function"]
        fn["arguments"] = (fn.get("arguments") or "") + (expected[len(actual):] if expected.startswith(actual) else "")


def _overlap(text: str, tag: str) -> int:
    """Length of the longest proper prefix of tag that ends text."""
    for k in range(min(len(tag) - 1, len(text)), 0, -1):
        if text.endswith(tag[:k]):
            return k
    return 0


def _is_json(text: str) -> bool:
    try:
        json.loads(text)
    except ValueError:
        return False
    return True
