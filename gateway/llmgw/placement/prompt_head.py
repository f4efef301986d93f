"""The head of a request's prompt, rendered the same way by every worker and replica.

Prefix-aware routing needs to know which requests share a prompt prefix without the
backend's tokenizer. For chat, the head is the conversation's start: the tools, then the
messages in order (role, then content) up to and including the first user message (a Messages
API request's top-level system prompt first). Every
later turn of a conversation resends that start unchanged, so it finds the replica that
holds the earlier turns; conversations that share a long system prompt or document share
its first `limit` bytes, and so a replica; short generic system prompts do not bind
different conversations together, since their first user messages differ. A completion's
head is its prompt. Only the first `limit` bytes are rendered, so an 8k-token prompt costs
no more than a short one.
"""

from __future__ import annotations

import orjson

SEPARATOR = "\n"


def head_and_sharing(body: dict, limit: int, unshared: bool = True) -> tuple[bytes, bool]:
    """The head, and whether the request is likely to share it with others: a later turn of a
    conversation (its earlier turns are cached where its start was sent), a preamble (tools,
    system prompt) that fills the head by itself (a shared prompt or document), or a
    completion prompt. A conversation's first turn with a short preamble is its own: binding
    it would place unshared work by hash, not by load. With `unshared` false, a lone user
    message (the commonest unshared request) is known unshared without rendering its head."""
    tools = body.get("tools")
    messages = body.get("messages")
    system = body.get("system")  # the Messages API's system prompt, rendered before its messages
    if not unshared and not tools and not system and isinstance(messages, list) \
            and len(messages) == 1 and isinstance(messages[0], dict) \
            and messages[0].get("role") == "user":
        return b"", False
    parts: list[str] = []
    size = 0
    if tools:  # vLLM's chat templates put the tools first, in the system prompt
        rendered = orjson.dumps(tools).decode()
        parts.append(rendered)
        size += len(rendered)
    if system:
        text = _message_text({"role": "system", "content": system}, limit)
        parts.append(text)
        size += len(text)
    if isinstance(messages, list):
        shared = False
        for i, message in enumerate(messages):
            if size >= limit:
                shared = True  # the preamble alone fills the head
                break
            text = _message_text(message, limit - size)
            parts.append(text)
            size += len(text)
            if isinstance(message, dict) and message.get("role") == "user":
                shared = i < len(messages) - 1  # a later turn resends this start
                break  # the conversation's start: every later turn begins with it
    else:
        shared = True
        prompt = body.get("prompt")
        if isinstance(prompt, str):
            parts.append(prompt[:limit])
        elif isinstance(prompt, list) and prompt and isinstance(prompt[0], str):
            parts.append(prompt[0][:limit])  # a batch of prompts: the first one places it
    return SEPARATOR.join(parts).encode("utf-8", "replace")[:limit], shared


def _message_text(message: object, budget: int) -> str:
    """role:content of one message, cut after `budget` characters of content."""
    if not isinstance(message, dict):
        return ""
    role = message.get("role")
    content = message.get("content")
    if isinstance(content, str):
        text = content[:budget]
    elif isinstance(content, list):
        text = "".join(_part_text(part) for part in content)[:budget]
    else:
        text = ""
    if message.get("tool_calls"):
        text += orjson.dumps(message["tool_calls"]).decode()
    return f"{role if isinstance(role, str) else ''}:{text}"


def _part_text(part: object) -> str:
    if not isinstance(part, dict):
        return ""
    if isinstance(part.get("text"), str):
        return part["text"]
    image = part.get("image_url")
    if isinstance(image, dict) and isinstance(image.get("url"), str):
        return image["url"][:256]  # an image's address (or the start of its data URL) places it
    return ""
