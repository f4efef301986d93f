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
        sizes = [_message_chars(m) for m in messages]
        tools = body.get("tools")
        total = sum(sizes) + (len(str(tools)) if tools else 0)
        return total // CHARS_PER_TOKEN + 1, (sizes[-1] if sizes else 0) // CHARS_PER_TOKEN + 1
    prompt = body.get("prompt")
    if isinstance(prompt, str):
        chars = len(prompt)
    elif isinstance(prompt, list):  # token ids, or a batch of prompts
        chars = sum(len(p) if isinstance(p, str) else CHARS_PER_TOKEN for p in prompt)
    else:
        chars = 0
    return chars // CHARS_PER_TOKEN + 1, chars // CHARS_PER_TOKEN + 1


def _message_chars(message: object) -> int:
    if not isinstance(message, dict):
        return 0
    content = message.get("content")
    if isinstance(content, str):
        return len(content)
    if isinstance(content, list):
        return sum(len(p["text"]) for p in content
                   if isinstance(p, dict) and isinstance(p.get("text"), str))
    return 0
