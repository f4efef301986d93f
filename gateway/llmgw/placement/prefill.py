"""What a request's prompt costs a replica to prefill, estimated without the tokenizer.

A replica's time to first token is mostly the prefill of the prompts ahead of it, and an
uncached 4k-token prompt costs it a hundred times what a cached conversation's new question
does. Placement weighs requests by this estimate: 4 characters a token (`len` of the text;
close enough to rank replicas). A replica that holds the
request's conversation (placement/holders.py) prefills only the last message.
"""

from __future__ import annotations

CHARS_PER_TOKEN = 4


def prompt_tokens(body: dict) -> tuple[int, int]:
    """(the whole prompt's estimated tokens, its last message's)."""
    messages = body.get("messages")
    if isinstance(messages, list):
        total = chars = 0
        for message in messages:  # one plain loop: this runs for every request of the pool
            content = message.get("content") if isinstance(message, dict) else None
            chars = len(content) if isinstance(content, str) else _parts_chars(content)
            total += chars
        tools = body.get("tools")
        if tools:
            total += len(str(tools))
        system = body.get("system")  # the Messages API's system prompt
        if system:
            total += len(system) if isinstance(system, str) else _parts_chars(system)
        return total // CHARS_PER_TOKEN + 1, chars // CHARS_PER_TOKEN + 1
    prompt = body.get("prompt")
    if isinstance(prompt, str):
        chars = len(prompt)
    elif isinstance(prompt, list):  # token ids, or a batch of prompts
        chars = sum(len(p) if isinstance(p, str) else CHARS_PER_TOKEN for p in prompt)
    else:
        chars = 0
    return chars // CHARS_PER_TOKEN + 1, chars // CHARS_PER_TOKEN + 1


def _parts_chars(content: object) -> int:
    """The text of a message whose content is a list of parts (images count nothing)."""
    if not isinstance(content, list):
        return 0
    return sum(len(p["text"]) for p in content
               if isinstance(p, dict) and isinstance(p.get("text"), str))
