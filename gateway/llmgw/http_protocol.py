"""The gateway's HTTP protocol: uvicorn's, bounded (client_limits.py), one write per loop turn.

uvicorn writes a response's head the moment the app sends `http.response.start`, and its
body on the next message: two system calls, two TCP segments and two wake-ups of the client
for every answer. On loopback a write costs tens of microseconds (the kernel delivers to the
receiver inside the sender's call), so that was one of the costliest steps of a request.
Here what the protocol writes is held until the event loop comes round, which the body
always does first: head and body leave together. A stream's events still leave as they
come, each in the turn it was sent.
"""

from __future__ import annotations

import asyncio

from .client_limits import BoundedHttpToolsProtocol


class CoalescingWriter:
    """A transport whose writes made in one loop turn go out in one call; everything else is
    the real transport's. Closing sends what is held first."""

    __slots__ = ("_transport", "_loop", "_held")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport, self._loop = transport, loop
        self._held: list[bytes] | None = None

    def write(self, data: bytes) -> None:
        if self._held is not None:
            self._held.append(data)
            return
        self._held = [data]
        self._loop.call_soon(self.flush)

    def flush(self) -> None:
        held, self._held = self._held, None
        # The client may have gone meanwhile: uvloop refuses a write on a closed transport.
        if held and not self._transport.is_closing():
            self._transport.write(held[0] if len(held) == 1 else b"".join(held))

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def __getattr__(self, name: str):
        return getattr(self._transport, name)


class GatewayHttpProtocol(BoundedHttpToolsProtocol):
    """Built with `limits=ClientLimits(...)` (llmgw.worker.GatewayWorker does)."""

    def wrap_transport(self, transport: asyncio.Transport) -> asyncio.Transport:
        return CoalescingWriter(transport, self.loop)  # outermost: it flushes before closing
