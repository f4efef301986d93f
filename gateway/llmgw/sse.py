"""Server-sent events: framing a byte stream into whole events, and the error event the gateway writes."""

from __future__ import annotations

from .errors import GatewayError

DONE = b"data: [DONE]\n\n"


class EventFramer:
    """Cuts an SSE byte stream into whole events (each ending in a blank line).

    Network reads split events anywhere; rewriting an event needs all of it. `feed` returns
    every complete event received so far as one bytes block, so a read that carried several
    events is still forwarded in one write.
    """

    __slots__ = ("_buffer",)

    def __init__(self) -> None:
        self._buffer = b""

    def feed(self, chunk: bytes) -> bytes:
        data = self._buffer + chunk if self._buffer else chunk
        if b"\r\n" in data:  # SSE allows CRLF; normalise so one separator rule holds
            data = data.replace(b"\r\n", b"\n")
        cut = data.rfind(b"\n\n")
        if cut < 0:
            self._buffer = data
            return b""
        self._buffer = data[cut + 2:]
        return data[:cut + 2]

    def rest(self) -> bytes:
        """Whatever was left without a closing blank line when the stream ended."""
        rest, self._buffer = self._buffer, b""
        return rest


def error_event(error: GatewayError) -> bytes:
    """The event that tells a streaming client the answer broke off (OpenAI SDKs raise on it)."""
    return b"data: " + error.body_bytes() + b"\n\n"
