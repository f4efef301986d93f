"""Batches survive crashes, with real processes: kill -9 the batch runner, the gateway or Redis
(append-only persistence on) in the middle of a batch, start it again, and the batch completes
with every input line exactly once in its output, and no line billed twice in usage. Each
crash is repeated."""

from __future__ import annotations

import io
import time

import openai
import orjson
import pytest

from stacks import TestStack

LINES = 300
ROUNDS = 3


@pytest.fixture(scope="module")
def cstack(tmp_path_factory):
    # Lines take ~0.2 s, so a crash lands mid-batch; leases short, so a dead runner's lines
    # and a dead gateway's batch leases come back within seconds.
    stack = TestStack("sim", tmp_path_factory.mktemp("batch-crashes"), workers=2, runners=1,
                      sim_args=("--ttft-ms", "20", "--itl-ms", "10"),
                      env={"BATCH_LEASE_SECS": "5", "CONCURRENCY_LEASE_SECS": "4",
                           "MAX_CONCURRENT_BATCH": "24", "BATCH_RUNNER_SLOTS": "24"}).start()
    yield stack
    stack.stop()


def _batch(stack: TestStack) -> tuple[openai.OpenAI, str, str]:
    org = stack.open_org(key={"name": "k", "scopes": ["batch"]})
    client = openai.OpenAI(base_url=stack.base_url + "/v1", api_key=org["api_key"],
                           max_retries=5, timeout=30)
    content = b"".join(orjson.dumps({
        "custom_id": f"r{i}", "method": "POST", "url": "/v1/chat/completions",
        "body": {"model": "qwen", "messages": [{"role": "user", "content": f"line {i}"}],
                 "max_tokens": 16}}) + b"\n" for i in range(LINES))
    up = client.files.create(file=("in.jsonl", io.BytesIO(content)), purpose="batch")
    batch = client.batches.create(input_file_id=up.id, endpoint="/v1/chat/completions",
                                  completion_window="24h")
    return client, batch.id, org["org"]["id"]


def _progress(client: openai.OpenAI, batch_id: str, at_least: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while client.batches.retrieve(batch_id).request_counts.completed < at_least:
        assert time.monotonic() < deadline, "no progress"
        time.sleep(0.05)


def _check(stack: TestStack, client: openai.OpenAI, batch_id: str, org_id: str) -> None:
    deadline = time.monotonic() + 120
    while (batch := client.batches.retrieve(batch_id)).status != "completed":
        assert batch.status in ("in_progress", "finalizing"), batch
        assert time.monotonic() < deadline, f"stuck: {batch}"
        time.sleep(0.2)
    out = [orjson.loads(x) for x in client.files.content(batch.output_file_id).content.splitlines()]
    assert sorted(x["custom_id"] for x in out) == sorted(f"r{i}" for i in range(LINES))
    assert batch.error_file_id is None and batch.request_counts.completed == LINES
    assert all(x["response"]["status_code"] == 200 for x in out)
    tokens = sum(x["response"]["body"]["usage"]["total_tokens"] for x in out)
    assert batch.usage.total_tokens == tokens
    with stack.admin() as admin:
        usage = admin.get("/admin/usage", params={"window": "24h"}).json()
    mine = next(o for o in usage["orgs"] if o["org_id"] == org_id)
    # billed once per line: the organisation's usage is exactly the output's tokens
    assert mine["prompt_tokens"] + mine["completion_tokens"] == tokens, mine
    assert mine["by_endpoint"]["batch/chat"]["success"] == LINES, mine


def _kill_runner(stack: TestStack) -> None:
    stack.kill_runners()
    time.sleep(0.5)
    stack.start_runner()


def _kill_gateway(stack: TestStack) -> None:
    stack.kill_gateway()
    time.sleep(0.5)
    stack.start_gateway()


CRASHES = {"runner": _kill_runner, "gateway": _kill_gateway,
           "redis": lambda stack: stack.restart_redis(kill=True)}


@pytest.mark.parametrize("round_", range(ROUNDS))
@pytest.mark.parametrize("crash", sorted(CRASHES))
def test_kill_mid_batch(cstack, crash, round_):
    client, batch_id, org_id = _batch(cstack)
    _progress(client, batch_id, 40 + 30 * round_)
    CRASHES[crash](cstack)
    _check(cstack, client, batch_id, org_id)
