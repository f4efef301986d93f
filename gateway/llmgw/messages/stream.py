"""A streamed Messages answer, looked at once per event: the public model name in
`message_start`, and the usage to bill, complete or not.

vLLM's events are `event: <type>\\ndata: <json>\\n\\n`: `message_start` (the message with its
usage: the prompt's input_tokens, output_tokens 0), `content_block_start`, one
`content_block_delta` per generated piece, `content_block_stop`, `message_delta` (the stop
reason and the final usage) and `message_stop`; or `error`. Only `message_start` is rewritten;
the others leave as they came, read by their `event:` line without parsing their JSON.

A stream the client leaves before `message_delta` has no final usage: it is billed the prompt
and one output token per content delta seen. vLLM sends a delta for a decode step's new text
only (a step whose text is held back, e.g. a tool call being parsed, sends none), so this
never bills more than was generated.
"""

from __future__ import annotations

import orjson

from .errors import error_event
from .protocol import metered_usage

# Deltas of generated text; a thinking block's closing signature_delta is not generated text.
_GENERATED = (b'"text_delta"', b'"input_json_delta"', b'"thinking_delta"')


class MessagesMeter:
    """The StreamMeter of an Anthropic Messages stream (streaming.py's relay drives it)."""

    __slots__ = ("_public", "_deltas", "_reported", "failed", "finished", "hold")

    error_event = staticmethod(error_event)  # how the relay reports a broken stream here

    def __init__(self, public_model: str) -> None:
        self._public = public_model
        self._deltas = 0
        self._reported: dict | None = None  # the stream's own usage, as Anthropic's
        self.failed = False
        self.finished = False
        self.hold = None  # nothing to do before an event leaves

    @property
    def usage(self) -> dict | None:
        """The tokens to bill (prompt/completion), as the relay's settlement reads them."""
        return metered_usage(self._reported)

    def _event(self, event: bytes) -> bytes:
        kind, data = _parts(event)
        if kind == b"content_block_delta":
            if self._reported is not None and any(g in data for g in _GENERATED):
                self._deltas += 1
                self._reported["output_tokens"] = self._deltas
            return event
        if kind == b"message_stop":
            self.finished = not self.failed
            return event
        if kind not in (b"message_start", b"message_delta", b"error") or not data.startswith(b"{"):
            return event
        payload = orjson.loads(data)
        if kind == b"error":
            self.failed = True
            return event
        if kind == b"message_delta":
            if isinstance(payload.get("usage"), dict):
                self._reported = {**(self._reported or {}), **payload["usage"]}
            return event
        message = payload.get("message")
        if isinstance(message, dict):
            if "model" in message:
                message["model"] = self._public
            if isinstance(message.get("usage"), dict):
                self._reported = dict(message["usage"])
        return b"event: message_start\ndata: " + orjson.dumps(payload)

    def process(self, block: bytes) -> bytes:
        out = [self._event(ev) for ev in block.split(b"\n\n") if ev]
        return b"\n\n".join(out) + b"\n\n" if out else b""


def _parts(event: bytes) -> tuple[bytes, bytes]:
    """(the event's type, its data): from the `event:` line, else the data's own `type`."""
    if event.startswith(b"event: "):
        line_end = event.find(b"\n")
        kind = event[7:line_end if line_end >= 0 else None].strip()
        at = event.find(b"\ndata: ")
        return kind, (event[at + 7:] if at >= 0 else b"")
    data = event[6:] if event.startswith(b"data: ") else b""
    if data.startswith(b"{"):
        kind = orjson.loads(data).get("type")
        return (kind.encode() if isinstance(kind, str) else b""), data
    return b"", data
