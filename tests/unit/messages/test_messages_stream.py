"""The Messages stream meter: the public model name in message_start, the usage to bill (final
or, when cut short, the prompt and one token per generated delta), failures and the end."""

import orjson

from llmgw.errors import BadGateway
from llmgw.messages.stream import MessagesMeter


def _event(kind: str, **fields) -> bytes:
    return b"event: " + kind.encode() + b"\ndata: " + orjson.dumps({"type": kind, **fields}) + b"\n\n"


START = _event("message_start", message={"id": "m1", "type": "message", "role": "assistant", "content": [],
                                         "model": "served", "usage": {"input_tokens": 7, "output_tokens": 0}})
TEXT = _event("content_block_delta", delta={"type": "text_delta", "text": "data: hi"}, index=0)


def test_the_model_is_renamed_and_the_final_usage_billed():
    meter = MessagesMeter("Public/Model")
    out = meter.process(START + _event("content_block_start", content_block={"type": "text", "text": ""}, index=0))
    assert b'"model":"Public/Model"' in out and out.startswith(b"event: message_start\ndata: {")
    assert out.count(b"\n\n") == 2 and meter.usage == {"prompt_tokens": 7, "completion_tokens": 0}
    assert meter.process(TEXT * 3) == TEXT * 3  # passed through untouched
    assert meter.usage == {"prompt_tokens": 7, "completion_tokens": 3} and not meter.finished
    meter.process(_event("content_block_stop", index=0) + _event(
        "message_delta", delta={"stop_reason": "max_tokens", "stop_sequence": None},
        usage={"input_tokens": 7, "output_tokens": 5}))
    assert meter.usage == {"prompt_tokens": 7, "completion_tokens": 5}
    meter.process(_event("message_stop"))
    assert meter.finished and not meter.failed


def test_only_generated_deltas_count_and_cached_prompt_tokens_are_billed():
    meter = MessagesMeter("P")
    meter.process(_event("message_start", message={"model": "s", "usage": {
        "input_tokens": 2, "cache_read_input_tokens": 30, "output_tokens": 0}}))
    meter.process(_event("content_block_delta", delta={"type": "input_json_delta", "partial_json": "{"}, index=0)
                  + _event("content_block_delta", delta={"type": "signature_delta", "signature": "abc"}, index=1)
                  + _event("content_block_delta", delta={"type": "thinking_delta", "thinking": "hm"}, index=1))
    assert meter.usage == {"prompt_tokens": 32, "completion_tokens": 2}


def test_an_error_event_is_a_failure_and_the_relay_reports_in_anthropics_shape():
    meter = MessagesMeter("P")
    meter.process(START + _event("error", error={"type": "internal_error", "message": "boom"}))
    assert meter.failed and not meter.finished
    event = meter.error_event(BadGateway("backend chat0 broke the connection"))
    head, data = event.split(b"\n", 1)
    assert head == b"event: error" and event.endswith(b"\n\n")
    assert orjson.loads(data.removeprefix(b"data: ")) == {"type": "error", "error": {
        "type": "api_error", "message": "backend chat0 broke the connection", "code": "bad_gateway",
        "param": None}}


def test_events_without_an_event_line_are_read_by_their_type():
    meter = MessagesMeter("P")
    out = meter.process(b'data: {"type":"message_start","message":{"model":"s","usage":{"input_tokens":1}}}\n\n')
    assert b'"P"' in out and meter.usage == {"prompt_tokens": 1, "completion_tokens": 0}
    assert meter.process(b": comment\n\n") == b": comment\n\n"
    meter.process(b'data: {"type":"message_stop"}\n\n')
    assert meter.finished
