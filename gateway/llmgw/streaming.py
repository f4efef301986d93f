"""Relaying a backend's SSE stream: event by event, metered, and always cleaned up."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable

import orjson
from starlette.responses import StreamingResponse

from .cache.collect import StreamCollector
from .sse import DONE, EventFramer, error_event
from .upstream import TRANSPORT_ERRORS, OpenStream

SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


class StreamMeter:
    """Looks at each event once: public model name, usage noted, usage the client did not ask
    for removed. The gateway always asks the backend for usage on every chunk
    (`continuous_usage_stats`), so a stream cut short still says how much it generated."""

    __slots__ = ("_public", "_keep_final", "_keep_each", "_collector", "usage", "failed", "finished")

    def __init__(self, public_model: str, *, keep_final_usage: bool, keep_each_usage: bool,
                 collector: StreamCollector | None = None) -> None:
        self._public = public_model
        self._collector = collector  # the response cache assembles the answer from the chunks
        self._keep_final = keep_final_usage
        self._keep_each = keep_each_usage
        self.usage: dict | None = None
        self.failed = False
        self.finished = False

    def _event(self, event: bytes) -> bytes | None:
        if not event.startswith(b"data: {"):
            self.finished = self.finished or event == DONE.rstrip()
            return event
        chunk = orjson.loads(event[6:])
        if "error" in chunk:  # the backend failed mid-stream and says so
            self.failed = True
            return event
        usage = chunk.get("usage")
        if usage:
            self.usage = usage
        if not chunk.get("choices"):  # the closing usage-only chunk
            if not (self._keep_final or self._keep_each):
                return None
        elif not self._keep_each and "usage" in chunk:
            del chunk["usage"]
        if "model" in chunk:
            chunk["model"] = self._public
        if self._collector is not None:
            self._collector.add(chunk)
        return b"data: " + orjson.dumps(chunk)

    def process(self, block: bytes) -> bytes:
        out = [e for e in (self._event(ev) for ev in block.split(b"\n\n") if ev) if e is not None]
        return b"\n\n".join(out) + b"\n\n" if out else b""


async def _chunks(stream: OpenStream) -> AsyncIterator[bytes]:
    """The backend's raw chunks until the request's hard cap; each read is cut there.

    The timeout wraps one read at a time, never a `yield`. asyncio's own timeout: anyio's
    cancel scope costs several times more, once per chunk.
    """
    chunks = stream.chunks()
    while True:
        try:
            async with asyncio.timeout_at(stream.deadline):
                chunk = await anext(chunks)
        except StopAsyncIteration:
            return
        yield chunk


async def relay(stream: OpenStream, meter: StreamMeter) -> AsyncIterator[bytes]:
    framer = EventFramer()
    try:
        async for chunk in _chunks(stream):
            events = framer.feed(chunk)
            if events and (out := meter.process(events)):
                yield out
        tail = framer.rest()
        if tail.strip() and (out := meter.process(tail + b"\n\n")):
            yield out
    except TRANSPORT_ERRORS as exc:  # includes the idle limit (a read timeout)
        meter.failed = True
        yield error_event(stream.failure(exc))
    except TimeoutError:
        meter.failed = True
        yield error_event(stream.overrun())


class RelayResponse(StreamingResponse):
    """A StreamingResponse that always runs `on_close`, even if it never starts sending.

    Starlette stops iterating when the client disconnects (it listens for http.disconnect
    while streaming); `on_close` then closes the upstream response, which makes vLLM abort
    the generation, and settles what was used.
    """

    def __init__(self, content: AsyncIterator[bytes], *, headers: dict[str, str],
                 on_close: Callable[[], Awaitable[None]]) -> None:
        super().__init__(content, media_type="text/event-stream", headers={**SSE_HEADERS, **headers})
        self._on_close = on_close

    async def __call__(self, scope, receive, send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            await self._on_close()
