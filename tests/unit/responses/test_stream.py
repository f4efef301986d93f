"""The Responses stream meter: public model name, usage from the final event, and the store
done before that event leaves."""

import asyncio

import orjson

from llmgw.responses.conversation import Turn
from llmgw.responses.stream import ResponsesMeter


def _event(kind: str, **fields) -> bytes:
    return b"event: " + kind.encode() + b"\ndata: " + orjson.dumps({"type": kind, **fields})


def test_model_renamed_usage_taken_and_the_final_response_chained_and_kept():
    kept = []

    async def keep(stored) -> None:
        kept.append(stored)
    turn = Turn(previous_id="resp_a", store=True, items=[{"role": "user", "content": "hi"}])
    meter = ResponsesMeter("Public/Model", turn, keep)
    created = meter.process(_event("response.created", response={"id": "resp_b",
                                                                 "model": "served"}) + b"\n\n")
    assert b'"Public/Model"' in created and meter.hold is None
    delta = meter.process(_event("response.output_text.delta", delta="data: x") + b"\n\n")
    assert delta.count(b"data: ") == 2  # the text's own "data: " is left alone
    final = meter.process(_event("response.completed", response={
        "id": "resp_b", "model": "served", "output": [{"type": "message"}],
        "usage": {"input_tokens": 5, "output_tokens": 2}}) + b"\n\n")
    assert meter.finished and not meter.failed and meter.usage["output_tokens"] == 2
    assert b'"previous_response_id":"resp_a"' in final and b'"Public/Model"' in final
    asyncio.run(meter.hold)  # the relay awaits this before the final event leaves
    assert kept[0].items == turn.items + [{"type": "message"}]


def test_a_failed_response_is_a_failure():
    meter = ResponsesMeter("m", Turn(None, False, []), lambda _s: asyncio.sleep(0))
    meter.process(_event("response.failed", response={"id": "resp_x", "status": "failed"}) + b"\n\n")
    assert meter.failed and not meter.finished
    meter.hold.close()


def test_events_without_an_event_line_or_without_data_pass_through():
    meter = ResponsesMeter("Public", Turn(None, False, []), lambda _s: asyncio.sleep(0))
    bare = meter.process(b'data: {"type":"response.created","response":{"model":"served"}}\n\n')
    assert b'"Public"' in bare and bare.startswith(b"data: ")
    assert meter.process(b": keep-alive comment\n\n") == b": keep-alive comment\n\n"
    assert meter.process(b"event: x\ndata: [DONE]\n\n") == b"event: x\ndata: [DONE]\n\n"
