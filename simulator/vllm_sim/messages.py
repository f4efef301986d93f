"""POST /v1/messages and /v1/messages/count_tokens, as vLLM 0.32 serves them.

vLLM turns a Messages request into the equivalent chat-completions request
(AnthropicServingMessages.to_chat_completion_request), runs it as chat, and converts the answer
or the chunk stream back (messages_stream.py). So does the simulator: a Messages request gets
the chat request's tokens, queueing, latency, KV cache and faults. Field errors are pydantic's
(OpenAI's shape, messages_request.py); the chat layer's errors (unknown model, a prompt over the
context) come back in Anthropic's shape, `{"type": "error", "error": {"type", "message"}}`.
"""

from __future__ import annotations

import json
import time

import orjson

from . import generate as gen
from . import plans, tool_request
from .messages_request import check_count_request, check_messages_request
from .messages_stream import MessagesEngine
from .validate import ApiError, bad_request, check_model, check_prompt_len, get_bool, get_int

_BILLING_HEADER = "x-anthropic-billing-header"  # Claude Code's per-request system block, dropped
_CHOICES = {"auto": "auto", "any": "required", "none": "none"}
_EMPTY = "Cannot apply chat template to an empty conversation. Provide at least one message."


def anthropic_error(exc: ApiError) -> ApiError:
    """An error of the chat layer as /v1/messages answers it (translate_error_response)."""
    try:
        err = orjson.loads(exc.body)["error"]
        return ApiError(exc.status, orjson.dumps({"type": "error", "error": {
            "type": err["type"], "message": err["message"]}}))
    except (orjson.JSONDecodeError, KeyError, TypeError):
        return exc


def _system_text(content) -> str | None:
    if isinstance(content, str):
        return None if content.startswith(_BILLING_HEADER) else content
    parts = [b["text"] for b in content if b.get("type") == "text" and b.get("text")
             and not b["text"].startswith(_BILLING_HEADER)]
    return "".join(parts) if parts else None


def _tool_result(block: dict, out: list) -> None:
    """A user's tool_result block: a tool message of its own, ahead of the user's message."""
    content, text = block.get("content"), ""
    if isinstance(content, str):
        text = content
    elif isinstance(content, list):
        text = "\n".join(item.get("text", "") for item in content if item.get("type") == "text")
    out.append({"role": "tool", "tool_call_id": block.get("tool_use_id") or "", "content": text})


def _convert_blocks(msg: dict, chat_msg: dict, out: list) -> None:
    parts, calls, reasoning = [], [], []
    for block in msg["content"]:
        kind = block["type"]
        if kind == "text" and block.get("text"):
            parts.append({"type": "text", "text": block["text"]})
        elif kind == "thinking" and block.get("thinking") is not None:
            reasoning.append(block["thinking"])
        elif kind == "tool_use":
            calls.append({"id": block.get("id") or f"call_{int(time.time())}", "type": "function",
                          "function": {"name": block.get("name") or "",
                                       "arguments": json.dumps(block.get("input") or {})}})
        elif kind == "tool_result":
            if msg["role"] == "user":
                _tool_result(block, out)
            else:
                parts.append({"type": "text", "text": f"Tool result: {block.get('content') or ''}"})
    if reasoning:
        chat_msg["reasoning"] = "".join(reasoning)
    if calls:
        chat_msg["tool_calls"] = calls
    if parts:
        chat_msg["content"] = parts[0]["text"] if len(parts) == 1 else parts


def chat_messages(body: dict) -> list:
    """The conversation as chat messages: the system prompt first, then each message."""
    out = []
    system = _system_text(body["system"]) if body.get("system") else None
    if system:
        out.append({"role": "system", "content": system})
    for msg in body["messages"]:
        if msg["role"] == "system":
            text = _system_text(msg["content"])
            if text:
                out.append({"role": "system", "content": text})
            continue
        chat_msg = {"role": msg["role"]}
        if isinstance(msg["content"], str):
            chat_msg["content"] = msg["content"]
        else:
            _convert_blocks(msg, chat_msg, out)
        if not (msg["role"] == "user" and "content" not in chat_msg):
            out.append(chat_msg)
    return out


def _chat_tools(body: dict) -> list | None:
    tools = body.get("tools")
    if tools is None:
        return None
    out = []
    for tool in tools:
        function = {"name": tool["name"], "parameters": {"type": "object", **tool["input_schema"]}}
        if tool.get("description") is not None:
            function["description"] = tool["description"]
        out.append({"type": "function", "function": function})
    return out


def chat_body(body: dict) -> dict:
    """The chat request vLLM builds from a Messages request (fields left out are null there)."""
    chat = {"model": body["model"], "messages": chat_messages(body)}
    for src, dst in (("max_tokens", "max_tokens"), ("max_tokens", "max_completion_tokens"),
                     ("stop_sequences", "stop"), ("temperature", "temperature"), ("top_p", "top_p"),
                     ("top_k", "top_k")):
        if body.get(src) is not None:
            chat[dst] = body[src]
    if get_bool(body, "stream", False):
        chat["stream"] = True
        chat["stream_options"] = {"include_usage": True, "continuous_usage_stats": True}
    choice = body.get("tool_choice")
    if choice is not None:
        chat["parallel_tool_calls"] = not choice.get("disable_parallel_tool_use")
        chat["tool_choice"] = _CHOICES.get(choice["type"]) or {"type": "function",
                                                               "function": {"name": choice["name"]}}
    tools = _chat_tools(body)
    if tools is not None:
        chat["tools"] = tools
        chat.setdefault("tool_choice", "auto")
    return chat


def _check_lengths(requested: int, cfg) -> None:
    """The renderer's check of the output length (max_completion_tokens, as vLLM sets both)."""
    if requested > cfg.max_model_len:
        raise bad_request(f"max_completion_tokens={requested} cannot be greater than max_model_len="
                          f"{cfg.max_model_len}. Please request fewer output tokens.",
                          "max_completion_tokens", requested)


def run(engine, body: dict, headers: dict, cfg, conn, t0: float):
    """Validate, convert, plan as chat (raising ApiError on a bad request), then run it."""
    check_messages_request(body)
    chat = chat_body(body)
    try:
        check_model(chat, cfg.served_model_names, adapters=cfg.lora_names)
        _check_lengths(get_int(body, "max_tokens", 1), cfg)
        if not chat["messages"]:  # the renderer's; the simulator's chat renders it as it is
            raise bad_request(_EMPTY)
        plan = plans.chat_plan(chat, headers, cfg)
    except ApiError as exc:
        raise anthropic_error(exc) from None
    return MessagesEngine(engine).run_generation(plan, conn, t0)


def count_tokens(body: dict, cfg) -> bytes:
    """The prompt's tokens, rendered as the Messages request's chat request would be."""
    check_count_request(body)
    chat = chat_body(body)
    try:
        check_model(chat, cfg.served_model_names, adapters=cfg.lora_names)
        tools = chat.get("tools")
        rendered = gen.render_chat(chat["messages"], True,
                                   tool_request.template_tools([t["function"] for t in tools or ()]))
        count = len(gen.tokenize(rendered, specials=True))
        check_prompt_len(count, cfg.max_model_len)
    except ApiError as exc:
        raise anthropic_error(exc) from None
    except ValueError as exc:
        raise anthropic_error(bad_request(str(exc))) from None
    return orjson.dumps({"input_tokens": count, "context_management": {"original_input_tokens": count}})
