"""SSE framing, model-name rewriting, and the relay's first event."""

import asyncio

import orjson

from llmgw.errors import BadGateway
from llmgw.sse import DONE, EventFramer, error_event
from llmgw.streaming import StreamMeter, relay

EVENTS = b'data: {"a":1}\n\ndata: {"b":2}\n\ndata: [DONE]\n\n'


def test_framer_reassembles_events_split_anywhere():
    for step in (1, 3, 7, len(EVENTS)):
        framer = EventFramer()
        out = b"".join(framer.feed(EVENTS[i:i + step]) for i in range(0, len(EVENTS), step))
        assert out == EVENTS and framer.rest() == b""


def test_framer_returns_only_whole_events_and_keeps_the_rest():
    framer = EventFramer()
    assert framer.feed(b'data: {"a":1}\n\ndata: {"b"') == b'data: {"a":1}\n\n'
    assert framer.feed(b":2}") == b""
    assert framer.rest() == b'data: {"b":2}'


def test_framer_normalises_crlf():
    assert EventFramer().feed(b"data: x\r\n\r\n") == b"data: x\n\n"


def test_error_event_is_an_openai_error_in_a_data_line():
    event = error_event(BadGateway("backend chat0 broke the connection"))
    assert event.startswith(b"data: ") and event.endswith(b"\n\n")
    err = orjson.loads(event[6:])["error"]
    assert err["code"] == "bad_gateway" and err["type"] == "server_error"


class _Stream:
    """An upstream stream whose whole answer arrives in one read, as from a fast backend."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.prefills = 0
        self.deadline = asyncio.get_running_loop().time() + 60

    async def _chunks(self):
        yield self.data

    def chunks(self):
        return self._chunks()

    def prefilled(self) -> None:
        self.prefills += 1  # the relay says so at the first event, once


def test_the_first_event_of_a_read_leaves_before_the_rest_is_rewritten():
    events = [b'data: {"choices": [{"delta": {"content": "%d"}}], "model": "m"}\n\n' % i
              for i in range(3)]

    async def main():
        loop, seen = asyncio.get_running_loop(), []
        meter = StreamMeter("public", keep_final_usage=False, keep_each_usage=False)
        stream = _Stream(b"".join(events) + DONE)
        async for out in relay(stream, meter):
            seen.append(out)
            loop.call_soon(seen.append, "loop came round")
            assert stream.prefills == 1  # the backend's prefill counted done at the first event
        return seen
    seen = asyncio.run(main())
    assert len(seen) == 4 and seen[1] == "loop came round", seen
    assert seen[0].count(b"data: ") == 1 and b'"public"' in seen[0]
    assert seen[2].count(b"data: ") == 3 and seen[2].endswith(DONE)
