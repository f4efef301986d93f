"""In-process checks of the simulator's building blocks (no server needed)."""

from __future__ import annotations

import asyncio

import orjson
import pytest

from vllm_sim import generate as gen
from vllm_sim import openai_shapes as shapes
from vllm_sim.capacity import Capacity
from vllm_sim.metrics import Metrics, go_float
from vllm_sim.pooling import embed_vector, relevance

pytestmark = pytest.mark.timeout(10)
HEAD = {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": "m"}


@pytest.mark.parametrize("piece", [" word", 'quote " and \\ back', "ünï\ncode"])
def test_plain_token_template_is_byte_identical_to_the_generic_path(piece):
    chat = shapes.PlainTokenEvents(HEAD, chat=True).event(2, piece)
    generic = shapes.chat_token_chunk(HEAD, 2, piece, None, None, None, None, None)
    assert chat == b"data: " + orjson.dumps(generic) + b"\n\n"
    head = {**HEAD, "object": "text_completion"}
    text = shapes.PlainTokenEvents(head, chat=False).event(0, piece)
    generic = shapes.completion_chunk(head, 0, piece, None, None, None, None, None, None)
    assert text == b"data: " + orjson.dumps(generic) + b"\n\n"


def test_generation_is_deterministic_and_bounded():
    a = gen.generate("prompt", None, 0, 10, (16, 128))
    assert a.pieces == gen.generate("prompt", 0, 0, 10, (16, 128)).pieces  # no seed == seed 0
    assert len(a.pieces) == 10 and a.finish_reason == "length"
    assert gen.generate("prompt", None, 1, 10, (16, 128)).pieces != a.pieces
    short = gen.generate("prompt", None, 0, 500, (3, 5))
    assert 3 <= len(short.pieces) <= 5 and short.finish_reason == "stop"
    assert len(gen.generate("prompt", None, 0, 50, (3, 5), ignore_eos=True).pieces) == 50


def test_tokenizer_round_trip_and_chat_template():
    text = "Hello, world!  Two spaces\nand a line."
    pieces = gen.tokenize(text)
    assert "".join(pieces) == text and gen.count_tokens(text) == len(pieces)
    assert gen.detokenize(gen.token_ids(pieces)) == text
    rendered = gen.render_chat([{"role": "user", "content": [{"type": "text", "text": "hi"}]}])
    assert rendered == "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"
    assert gen.tokenize(rendered, specials=True)[0] == "<|im_start|>"


def test_embeddings_are_unit_vectors_and_relevance_prefers_overlap():
    v = embed_vector("abc", 32)
    assert len(v) == 32 and abs(sum(x * x for x in v) - 1) < 1e-5 and embed_vector("abc", 32) == v
    assert relevance("capital of France", "Paris is the capital of France") > relevance("capital of France", "blue")
    assert 0 <= relevance("", "") <= 1


def test_capacity_fifo_and_cancellation():
    async def scenario():
        cap = Capacity(2)
        order = []
        assert cap.try_acquire(2) and not cap.try_acquire(1)

        async def waiter(name, slots):
            taken = await cap.acquire(slots)
            order.append(name)
            return taken

        tasks = [asyncio.create_task(waiter(n, s)) for n, s in (("a", 1), ("b", 2), ("c", 1))]
        await asyncio.sleep(0)
        assert cap.waiting == 3
        tasks[1].cancel()  # b leaves the queue; a and c can then go in arrival order
        await asyncio.sleep(0)
        cap.release(2)
        await asyncio.gather(tasks[0], tasks[2])
        assert order == ["a", "c"] and cap.running == 2 and cap.waiting == 0

    asyncio.run(scenario())


def test_metrics_text_format():
    assert go_float(1795329695.9612553) == "1.7953296959612553e+09"
    assert (go_float(0), go_float(3), go_float(0.25)) == ("0.0", "3.0", "0.25")
    m = Metrics('odd"name', 512)
    m.record_finished(["length", "stop"], 10, 8, 4, 0.0, 0.1, 0.2, 0.5)
    text = m.render(running=1, waiting=2, kv_usage=0.5).decode()
    assert 'vllm:num_requests_waiting{engine="0",model_name="odd\\"name"} 2.0' in text
    assert 'vllm:request_success_total{engine="0",finished_reason="stop",model_name="odd\\"name"} 1.0' in text
    assert 'vllm:time_to_first_token_seconds_bucket{engine="0",le="0.25",model_name="odd\\"name"} 1.0' in text
    for line in text.splitlines():
        assert line.startswith("# ") or line.rsplit(" ", 1)[1].replace(".", "").replace("e+", "").isdigit()
