"""A streamed Responses API answer, looked at once per event: the public model name in every
response object, usage from the final event, and the response stored before that event leaves.

vLLM's events carry a `response` object at their start (`response.created`, `...in_progress`)
and end (`response.completed`, `response.incomplete`, `response.failed`). The final one holds
the whole response with its usage; the gateway chains and stores it (conversation.py) before
passing it on, so a client that sends its next turn as soon as it sees the end finds it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import orjson

from ..sse import error_event
from .conversation import Turn
from .store import StoredResponse

FINAL = frozenset(("response.completed", "response.incomplete", "response.failed"))


class ResponsesMeter:
    """The StreamMeter of a Responses stream (streaming.py's relay drives both)."""

    __slots__ = ("_public", "_turn", "_keep", "usage", "failed", "finished", "hold")

    error_event = staticmethod(error_event)  # how the relay reports a broken stream here

    def __init__(self, public_model: str, turn: Turn,
                 keep: Callable[[StoredResponse], Awaitable[None]]) -> None:
        self._public, self._turn, self._keep = public_model, turn, keep
        self.usage: dict | None = None
        self.failed = False
        self.finished = False
        self.hold: Awaitable[None] | None = None  # to await before the processed block leaves

    def _event(self, event: bytes) -> bytes:
        # The data line starts the event or follows its `event:` line (JSON has no raw newline).
        if event.startswith(b"data: "):
            head, data = b"", event[6:]
        else:
            at = event.find(b"\ndata: ")
            if at < 0:
                return event
            head, data = event[:at + 1], event[at + 7:]
        if not data.startswith(b"{"):
            return event
        payload = orjson.loads(data)
        kind = payload.get("type")
        if kind == "error" or "error" in payload and kind is None:
            self.failed = True
            return event
        response = payload.get("response")
        if isinstance(response, dict):
            if "model" in response:
                response["model"] = self._public
            if kind in FINAL:
                self.usage = response.get("usage")
                self.failed = kind == "response.failed"
                self.finished = not self.failed
                self.hold = self._keep(self._turn.answered(response))
        return head + b"data: " + orjson.dumps(payload)

    def process(self, block: bytes) -> bytes:
        out = [self._event(ev) for ev in block.split(b"\n\n") if ev]
        return b"\n\n".join(out) + b"\n\n" if out else b""
