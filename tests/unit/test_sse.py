"""SSE framing and model-name rewriting."""

import orjson

from llmgw.errors import BadGateway
from llmgw.sse import EventFramer, error_event

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
