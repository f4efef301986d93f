"""Closing a connection whose client may still be sending, without losing the answer.

A socket closed with unread bytes in its receive buffer makes the kernel send a reset, which
can discard the answer before the client reads it (the 413 for a body too large, most of all:
its client is still sending that body). So, as nginx's lingering close: the answer goes out,
then a FIN (the client sees the end of the answer at once), then whatever still arrives is
read and discarded until the client closes too, falls silent for LINGER_IDLE_SECS, or
LINGER_MAX_SECS have passed; only then is the socket closed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

# nginx's lingering_timeout and lingering_time are 5 s and 30 s; the answer is a few hundred
# bytes and leaves within a round trip, so a shorter wait keeps a discarding worker cheap.
LINGER_IDLE_SECS = 2.0
LINGER_MAX_SECS = 5.0


class LingeringTransport:
    """The protocol's transport: close() lingers when `client_may_send()` says so, and a
    plain close otherwise; everything else is the real transport's. Once close() is called
    the transport is closing (is_closing()), and what arrives must go to discard()."""

    __slots__ = ("_transport", "_loop", "_client_may_send", "_closing", "_timer",
                 "_last_data", "_give_up_at", "write")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop,
                 client_may_send: Callable[[], bool]) -> None:
        self._transport, self._loop = transport, loop
        self._client_may_send = client_may_send
        self._closing = False
        self._timer: asyncio.TimerHandle | None = None
        self._last_data = self._give_up_at = 0.0
        self.write = transport.write  # the hot path: no indirection

    def close(self) -> None:
        if self._closing:
            return
        self._closing = True
        real = self._transport
        if real.is_closing() or not real.can_write_eof() or not self._client_may_send():
            real.close()
            return
        real.write_eof()  # after what is buffered: the client gets the whole answer, then EOF
        real.resume_reading()  # uvicorn may have paused it under a body nobody read
        self._last_data = now = self._loop.time()
        self._give_up_at = now + LINGER_MAX_SECS
        self._timer = self._loop.call_later(LINGER_IDLE_SECS, self._check)

    def is_closing(self) -> bool:
        return self._closing or self._transport.is_closing()

    @property
    def lingering(self) -> bool:
        return self._timer is not None

    def discard(self, data: bytes) -> None:
        """Bytes that came after close(): dropped; they only show the client is still there."""
        self._last_data = self._loop.time()

    def connection_lost(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _check(self) -> None:
        now = self._loop.time()
        if now >= self._give_up_at or now - self._last_data >= LINGER_IDLE_SECS:
            self._timer = None
            self._transport.close()
            return
        wake = min(self._last_data + LINGER_IDLE_SECS, self._give_up_at)
        self._timer = self._loop.call_later(wake - now, self._check)

    def __getattr__(self, name: str):
        return getattr(self._transport, name)
