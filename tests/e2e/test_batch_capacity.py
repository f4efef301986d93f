"""Batch work takes only the room realtime leaves, with real processes (simulators with 8
sequence slots each, gunicorn, Redis, a runner): lines do not start while realtime fills the
backends, and running lines stop (and run again later, once each in the output) when realtime
arrives and needs their slots."""

from __future__ import annotations

import asyncio
import io
import time

import httpx
import openai
import orjson
import pytest

from stacks import E2E_ROUTING, TestStack

SEQS = 8


@pytest.fixture(scope="module")
def kstack(tmp_path_factory):
    state = tmp_path_factory.mktemp("batch-capacity")
    routing = state / "routing.yaml"
    routing.write_text(E2E_ROUTING.read_text().replace("max_num_seqs: 64", f"max_num_seqs: {SEQS}"))
    stack = TestStack("sim", state, workers=2, runners=1, routing=routing,
                      sim_args=("--ttft-ms", "20", "--itl-ms", "50", "--max-num-seqs", str(SEQS)),
                      env={"BATCH_CAPACITY_SHARE": "0.75", "MAX_CONCURRENT_BATCH": "32",
                           "BATCH_RUNNER_SLOTS": "32"}).start()
    yield stack
    stack.stop()


def _batch(stack: TestStack, n: int, max_tokens: int) -> tuple[openai.OpenAI, str]:
    key = stack.open_org(key={"name": "b", "scopes": ["batch"]})["api_key"]
    client = openai.OpenAI(base_url=stack.base_url + "/v1", api_key=key, max_retries=3)
    content = b"".join(orjson.dumps({
        "custom_id": f"r{i}", "method": "POST", "url": "/v1/chat/completions",
        "body": {"model": "qwen", "messages": [{"role": "user", "content": "x"}],
                 "max_tokens": max_tokens}}) + b"\n" for i in range(n))
    up = client.files.create(file=("in.jsonl", io.BytesIO(content)), purpose="batch")
    return client, client.batches.create(input_file_id=up.id, endpoint="/v1/chat/completions",
                                         completion_window="24h").id


async def _realtime(stack: TestStack, key: str, n: int, max_tokens: int) -> list[tuple[int, float]]:
    """n streams at once: (status, seconds to the first content event)."""
    async def one(client: httpx.AsyncClient) -> tuple[int, float]:
        sent, first = time.perf_counter(), None
        async with client.stream("POST", "/v1/chat/completions", json={
                "model": "qwen", "messages": [{"role": "user", "content": "hi"}],
                "max_tokens": max_tokens, "stream": True},
                headers={"Authorization": f"Bearer {key}"}) as resp:
            async for line in resp.aiter_lines():
                if first is None and '"content":"' in line:
                    first = time.perf_counter() - sent
        return resp.status_code, first if first is not None else float("inf")
    async with httpx.AsyncClient(base_url=stack.base_url, timeout=60) as client:
        return await asyncio.gather(*(one(client) for _ in range(n)))


def _aborted(stack: TestStack) -> int:
    return sum(httpx.get(stack.backend_url(n) + "/sim/stats").json()["aborted"]
               for n in ("chat0", "chat1"))


def _running(stack: TestStack) -> int:
    return sum(httpx.get(stack.backend_url(n) + "/sim/stats").json()["running"]
               for n in ("chat0", "chat1"))


def _completed(client: openai.OpenAI, batch_id: str, timeout: float = 90) -> list[dict]:
    deadline = time.monotonic() + timeout
    while (batch := client.batches.retrieve(batch_id)).status != "completed":
        assert time.monotonic() < deadline, batch
        time.sleep(0.2)
    return [orjson.loads(x) for x in client.files.content(batch.output_file_id).content.splitlines()]


def test_lines_wait_while_realtime_fills_the_backends(kstack):
    key = kstack.open_org()["api_key"]

    async def scenario():
        realtime = asyncio.create_task(_realtime(kstack, key, 2 * SEQS, 60))  # ~3 s, all slots
        await asyncio.sleep(0.8)
        client, batch_id = _batch(kstack, 10, 4)
        await asyncio.sleep(1.5)
        during = client.batches.retrieve(batch_id)
        return await realtime, client, batch_id, during
    answers, client, batch_id, during = asyncio.run(scenario())
    assert all(status == 200 for status, _ in answers)
    assert during.status == "in_progress" and during.request_counts.completed == 0, during
    out = _completed(client, batch_id)
    assert sorted(x["custom_id"] for x in out) == sorted(f"r{i}" for i in range(10))


def test_running_lines_give_their_slots_to_arriving_realtime(kstack):
    key = kstack.open_org()["api_key"]
    client, batch_id = _batch(kstack, 40, 60)  # lines of ~3 s
    deadline = time.monotonic() + 20
    while _running(kstack) < 2 * int(0.75 * SEQS) - 2:
        assert time.monotonic() < deadline, "batch did not fill its share"
        time.sleep(0.05)
    before = _aborted(kstack)
    answers = asyncio.run(_realtime(kstack, key, SEQS, 4))  # more than the room left
    assert all(status == 200 for status, _ in answers)
    # batch lines were aborted to make room (none are without preemption), and no realtime
    # request waited anywhere near a batch line's 3 s
    assert _aborted(kstack) > before
    assert max(ttft for _, ttft in answers) < 1.0, answers
    out = _completed(client, batch_id)
    assert sorted(x["custom_id"] for x in out) == sorted(f"r{i}" for i in range(40))
    assert all(x["response"]["status_code"] == 200 for x in out)
