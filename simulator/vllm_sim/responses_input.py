"""Responses API `input` -> chat messages -> the prompt text, as vLLM 0.32 builds them.

check_input() stands in for pydantic's validation of `input` (str | list of items); render()
follows vLLM's construct_input_messages(): instructions become a system message, items become
chat messages (function calls join the assistant message before them, outputs become tool
messages), then the conversation is rendered by the same chat template as /v1/chat/completions.
"""

from __future__ import annotations

import json

from . import generate as gen
from . import openai_shapes as shapes
from .validate import ApiError, bad_request, invalid

_ROLES = ("user", "assistant", "system", "developer")
_TEXT_PARTS = ("input_text", "output_text")  # vLLM's chat parser reads both as text
_INPUT_PARTS = ("input_text", "input_image", "input_file")
_OUTPUT_PARTS = ("output_text", "refusal")
# Item types pydantic accepts but vLLM's non-harmony renderer refuses ("Unsupported input item type").
_UNSUPPORTED = frozenset((
    "file_search_call", "computer_call", "computer_call_output", "web_search_call", "image_generation_call",
    "code_interpreter_call", "local_shell_call", "local_shell_call_output", "shell_call", "shell_call_output",
    "apply_patch_call", "apply_patch_call_output", "mcp_list_tools", "mcp_approval_request",
    "mcp_approval_response", "mcp_call", "item_reference", "compaction", "tool_search_call",
    "tool_search_output"))


# ---- validation ----------------------------------------------------------------
def _malformed(i: int, problem: str, value) -> ApiError:
    """A list item no input type accepts. vLLM reports every union branch's error (often 200+);
    we give the first one vLLM gives (input is not a string) and the item's actual problem."""
    first = {"type": "string_type", "loc": "body.input", "msg": "Input should be a valid string",
             "input": shapes._summarize(value)}
    second = {"type": "value_error", "loc": f"body.input.{i}", "msg": problem, "input": shapes._summarize(value[i])}
    return ApiError(400, shapes.error(f"2 validation errors:\n  {first!r}\n  {second!r}", "Bad Request", 400,
                                      "body.input"))


def _parts_problem(content, allowed: tuple) -> str | None:
    if isinstance(content, str):
        return None
    if not isinstance(content, list):
        return "content should be a string or a list of content parts"
    for part in content:
        if not isinstance(part, dict) or part.get("type") not in allowed:
            return f"content parts should be one of: {', '.join(allowed)}"
        if part["type"] in ("input_text", "output_text") and not isinstance(part.get("text"), str):
            return f"{part['type']} parts need a string 'text'"
    return None


def _item_problem(item) -> str | None:
    """Why pydantic would refuse this item, or None."""
    if not isinstance(item, dict):
        return "Input should be a valid dictionary"
    kind = item.get("type")
    if kind == "function_call":
        missing = [k for k in ("call_id", "name", "arguments") if not isinstance(item.get(k), str)]
        return f"function_call needs string {', '.join(missing)}" if missing else None
    if kind in ("function_call_output", "custom_tool_call_output"):
        return None if isinstance(item.get("output"), (str, list)) else f"{kind} needs 'output'"
    if kind == "custom_tool_call":
        return None if isinstance(item.get("call_id"), str) and isinstance(item.get("name"), str) \
            else "custom_tool_call needs string call_id and name"
    if kind == "reasoning":
        return None if isinstance(item.get("summary"), list) else "reasoning needs a 'summary' list"
    if kind in _UNSUPPORTED:
        return None  # passes validation, refused when rendered
    if kind not in (None, "message"):
        return f"unknown input item type {kind!r}"
    if item.get("role") not in _ROLES:
        return f"role should be one of: {', '.join(_ROLES)}"
    if "content" not in item:
        return "Field required: content"
    # Assistant items with a list of parts must say type "message" (they are output messages).
    output_message = item.get("role") == "assistant" and kind == "message"
    return _parts_problem(item["content"], _OUTPUT_PARTS if output_message else _INPUT_PARTS)


def check_input(body: dict) -> None:
    if "input" not in body:
        raise invalid("missing", "input", "Field required", body)
    value = body["input"]
    if isinstance(value, str):
        return
    if isinstance(value, dict):  # vLLM's input_item_parsing lists any iterable: a dict becomes its keys
        value = list(value)
    if not isinstance(value, list):
        shown = shapes._summarize(value)
        errors = [{"type": "string_type", "loc": "body.input", "msg": "Input should be a valid string",
                   "input": shown},
                  {"type": "list_type", "loc": "body.input", "msg": "Input should be a valid list", "input": shown}]
        msg = "2 validation errors:\n" + "\n".join(f"  {e!r}" for e in errors)
        raise ApiError(400, shapes.error(msg, "Bad Request", 400, "body.input"))
    for i, item in enumerate(value):
        problem = _item_problem(item)
        if problem:
            raise _malformed(i, problem, value)


# ---- items -> chat messages ------------------------------------------------------
def _text_parts(content):
    """Responses content parts as chat text parts (non-text parts are dropped)."""
    if not isinstance(content, list):
        return content
    return [{"type": "text", "text": p["text"]} for p in content if p.get("type") in _TEXT_PARTS]


def _tool_call(item: dict) -> dict:
    if item["type"] == "custom_tool_call":  # vLLM passes custom tool input as {"input": ...} JSON
        args = json.dumps({"input": item.get("input") or ""}, ensure_ascii=False)
    else:
        args = item["arguments"]
    return {"id": item["call_id"], "function": {"name": item["name"], "arguments": args}, "type": "function"}


def _assistant_text(item: dict) -> str:
    content = item["content"]
    if isinstance(content, str):
        return content
    return content[0].get("text", "") if content else ""  # vLLM keeps only the first part


def _message(item: dict, prev: dict | None) -> dict | None:
    """vLLM's _construct_message_from_response_item: a new message, or None when merged into prev."""
    prev = prev if prev is not None and prev.get("role") == "assistant" else None
    kind = item.get("type")
    if kind in ("function_call", "custom_tool_call"):
        call = _tool_call(item)
        if prev is not None:
            prev.setdefault("tool_calls", []).append(call)
            return None
        return {"role": "assistant", "tool_calls": [call]}
    if kind == "reasoning":
        if item.get("encrypted_content"):
            raise bad_request("Encrypted content is not supported.", "input")
        texts = item.get("content") or item.get("summary") or []
        text = texts[0].get("text", "") if texts and isinstance(texts[0], dict) else ""
        if prev is not None and prev.get("reasoning") is None:
            prev["reasoning"] = text
            return None
        return {"role": "assistant", "reasoning": text}
    if kind in ("function_call_output", "custom_tool_call_output"):
        return {"role": "tool", "content": _text_parts(item.get("output")), "tool_call_id": item.get("call_id")}
    if kind in _UNSUPPORTED:
        raise bad_request(f"Unsupported input item type: {kind}", "input")
    if item["role"] == "assistant":
        if prev is not None and prev.get("content") is None:
            prev["content"] = _assistant_text(item)
            return None
        return {"role": "assistant", "content": _assistant_text(item)}
    return {"role": item["role"], "content": _text_parts(item["content"])}


def _continues_final(value) -> bool:
    """A last assistant message left in_progress/incomplete is continued, not answered."""
    if not isinstance(value, list) or not value:
        return False
    last = value[-1]
    return last.get("type", "message") in ("message", "reasoning") and \
        last.get("status") in ("in_progress", "incomplete")


def to_messages(instructions: str | None, value) -> list:
    """vLLM's construct_input_messages() for a request without a previous response."""
    messages = [{"role": "system", "content": instructions}] if instructions else []
    if isinstance(value, str):
        return messages + [{"role": "user", "content": value}]
    converted: list = []  # items only: merging never reaches back into the instructions
    for item in value:
        msg = _message(item, converted[-1] if converted else None)
        if msg is not None:
            converted.append(msg)
    return messages + converted


def render(instructions: str | None, value) -> str:
    """The prompt text: the chat template applied to instructions + input as chat messages."""
    messages = to_messages(instructions, value)
    if not _continues_final(value):
        return gen.render_chat(messages)
    # continue_final_message: the last message stays open, no generation prompt follows.
    return gen.render_chat(messages, add_generation_prompt=False).removesuffix(gen.IM_END + "\n")
