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

    __slots__ = ("_public", "_keep_final", "_keep_each", "_collector", "usage", "failed", "finished",
                 "hold")

    error_event = staticmethod(error_event)  # how the relay reports a broken stream here

    def __init__(self, public_model: str, *, keep_final_usage: bool, keep_each_usage: bool,
                 collector: StreamCollector | None = None) -> None:
        self._public = public_model
        self._collector = collector  # the response cache assembles the answer from the chunks
        self._keep_final = keep_final_usage
        self._keep_each = keep_each_usage
        self.usage: dict | None = None
        self.failed = False
        self.finished = False
        self.hold = None  # a chat or completion stream has nothing to do before an event leaves

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


async def _held(meter) -> None:
    """What the meter must finish before its block leaves (a Responses answer is stored)."""
    hold, meter.hold = meter.hold, None
    await hold


async def relay(stream: OpenStream, meter: StreamMeter,
                on_finished: Callable[[], None] | None = None) -> AsyncIterator[bytes]:
    """The backend's stream, metered, event by event. `on_finished` runs once the meter has
    seen the stream's end, before the block that ends it leaves: a settlement made there
    reaches Redis before the client can have the whole answer."""
    framer = EventFramer()
    first = True

    def ended() -> None:
        nonlocal on_finished
        if on_finished is not None and meter.finished and not meter.failed:
            done, on_finished = on_finished, None
            done()
    try:
        async for chunk in _chunks(stream):
            events = framer.feed(chunk)
            if first and events:
                # The first event leaves before the rest of its read is rewritten: a read that
                # brought a whole fast answer would otherwise hold it back for all of them.
                head, events = events.split(b"\n\n", 1)
                if out := meter.process(head + b"\n\n"):
                    first = False
                    stream.prefilled()
                    if meter.hold is not None:
                        await _held(meter)
                    ended()
                    yield out
                    await asyncio.sleep(0)  # the loop comes round: the held write goes out
            if events and (out := meter.process(events)):
                if meter.hold is not None:
                    await _held(meter)
                ended()
                yield out
        tail = framer.rest()
        if tail.strip() and (out := meter.process(tail + b"\n\n")):
            if meter.hold is not None:
                await _held(meter)
            ended()
            yield out
    except TRANSPORT_ERRORS as exc:  # includes the idle limit (a read timeout)
        meter.failed = True
        yield meter.error_event(stream.failure(exc))
    except TimeoutError:
        meter.failed = True
        yield meter.error_event(stream.overrun())


class RelayResponse(StreamingResponse):
    """A stream relayed in the request's own task, stopped when the client leaves, and
    `on_close` always run (even if sending never started): it closes the upstream response,
    which makes vLLM abort the generation, and settles what was used.

    Starlette's StreamingResponse runs the stream in a second task beside a disconnect
    listener, inside an anyio task group; the stream's first event then waits for that task
    to be scheduled. Here the request's task streams, and a small watcher task cancels it
    if uvicorn reports `http.disconnect` while the stream is still being sent.
    """

    def __init__(self, content: AsyncIterator[bytes], *, headers: dict[str, str],
                 on_close: Callable[[], Awaitable[None]]) -> None:
        super().__init__(content, media_type="text/event-stream", headers={**SSE_HEADERS, **headers})
        self._on_close = on_close
        self._sending = False
        self._client_left = False

    async def __call__(self, scope, receive, send) -> None:
        task = asyncio.current_task()
        watcher = asyncio.get_running_loop().create_task(self._watch(receive, task))
        self._sending = True
        try:
            await self.stream_response(send)
        except asyncio.CancelledError:
            if not self._client_left or task.cancelling() > 1:
                raise  # cancelled from elsewhere too (shutdown): that cancellation stands
            task.uncancel()  # the client left: the stream just ends
        finally:
            self._sending = False
            watcher.cancel()
            await self._on_close()

    async def _watch(self, receive, task: asyncio.Task) -> None:
        while self._sending:
            message = await receive()
            if message["type"] == "http.disconnect" and self._sending:
                self._client_left = True
                task.cancel()
                return
