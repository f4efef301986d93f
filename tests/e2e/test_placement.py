"""Prefix placement through real processes: every worker of every gateway replica sends a
conversation's later turns to the same backend, and a backend leaving moves only the
conversations it held."""

from __future__ import annotations

import time
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor

import httpx
import orjson
import pytest

from stacks import E2E_ROUTING, TestStack

CONVERSATIONS = 40
SENDS = 4  # per conversation: new connections, so spread over workers and replicas


@pytest.fixture(scope="module")
def placed(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("placement")
    routing = tmp / "routing.yaml"
    table = E2E_ROUTING.read_text()
    assert "  chat:\n    backends:" in table  # the chat pool gets the policy, or the test is void
    routing.write_text(table.replace(
        "  chat:\n    backends:", "  chat:\n    policy: {name: prefix}\n    backends:"))
    stack = TestStack("sim", tmp, workers=2, replicas=2, routing=routing,
                      sim_args=("--ttft-ms", "0", "--itl-ms", "0")).start()
    stack.open_key = stack.open_org()["api_key"]
    yield stack
    stack.stop()


def _conversation(i: int, turns: int) -> list[dict]:
    messages = [{"role": "system", "content": "You are a careful assistant. " * 4},
                {"role": "user", "content": f"Conversation {i}: tell me about topic {i * 7919}"}]
    for t in range(1, turns):
        messages += [{"role": "assistant", "content": f"answer {t}"},
                     {"role": "user", "content": f"and then {t}?"}]
    return messages


def _send(stack: TestStack, conversation: int, send: int, tag: str) -> None:
    url = stack.base_urls[send % len(stack.base_urls)]
    with httpx.Client(timeout=30) as client:  # a new connection: any worker may take it
        resp = client.post(url + "/v1/chat/completions", headers={
            "Authorization": f"Bearer {stack.open_key}",
            "X-Request-ID": f"{tag}-{conversation}-{send}"},
            json={"model": "qwen", "max_tokens": 1,
                  "messages": _conversation(conversation, 2 + send % 3)})
        resp.raise_for_status()


def _backends(stack: TestStack, tag: str) -> dict[int, list[str]]:
    """conversation -> the backend of each of its requests, from every gateway's access log."""
    seen: dict[int, list[str]] = defaultdict(list)
    for log in stack.logs.glob("gateway*.log"):
        for line in log.read_bytes().splitlines():
            if not line.startswith(b"{") or f'"{tag}-'.encode() not in line:
                continue
            record = orjson.loads(line)
            seen[int(record["request_id"].split("-")[1])].append(record["backend"])
    return seen


def _round(stack: TestStack, tag: str) -> dict[int, list[str]]:
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda a: _send(stack, *a, tag),
                      [(c, s) for c in range(CONVERSATIONS) for s in range(SENDS)]))
    time.sleep(0.5)  # access lines are written after the answer
    return _backends(stack, tag)


def test_every_worker_and_replica_sends_a_conversation_to_one_backend(placed):
    seen = _round(placed, "agree")
    assert len(seen) == CONVERSATIONS and all(len(v) == SENDS for v in seen.values())
    agreed = sum(len(set(backends)) == 1 for backends in seen.values())
    assert agreed / CONVERSATIONS >= 0.95, seen
    homes = {backends[0] for backends in seen.values()}
    assert homes == {"chat0", "chat1"}  # the keys spread over the pool


def test_a_backend_leaving_moves_only_its_own_conversations(placed):
    before = {c: b[0] for c, b in _round(placed, "before").items()}
    httpx.post(placed.backend_url("chat1") + "/sim/faults",
               json={"reset": True, "health_fail": True}).raise_for_status()
    try:
        time.sleep(3)  # two health checks: chat1 out of rotation in every worker
        during = _round(placed, "during")
    finally:
        httpx.post(placed.backend_url("chat1") + "/sim/faults",
                   json={"reset": True}).raise_for_status()
    stayed = [c for c, home in before.items() if home == "chat0"]
    assert stayed and all(set(during[c]) == {"chat0"} for c in stayed)
    assert all(set(backends) == {"chat0"} for backends in during.values())


def _stream_then_leave(stack: TestStack, url: str, conversation: int) -> None:
    """A streamed later turn whose client reads one event and goes away."""
    with httpx.Client(timeout=30) as client, client.stream("POST", url + "/v1/chat/completions", headers={
            "Authorization": f"Bearer {stack.open_key}"}, json={
            "model": "qwen", "max_tokens": 50, "stream": True,
            "messages": _conversation(conversation, 3)}) as resp:
        next(resp.iter_lines())


def test_work_estimates_return_to_zero_whatever_becomes_of_the_requests(placed):
    """Every request's prefill estimate is given back: answered, streamed, left mid-stream or
    refused by the backend. A leak would bias placement for good."""
    placed.chat_faults(error_rate=0.2)
    try:
        jobs = []
        with ThreadPoolExecutor(16) as pool:
            for i in range(120):
                url = placed.base_urls[i % 2]
                if i % 3 == 0:
                    jobs.append(pool.submit(_stream_then_leave, placed, url, i))
                else:
                    jobs.append(pool.submit(lambda i=i, url=url: httpx.post(
                        url + "/v1/chat/completions", timeout=30,
                        headers={"Authorization": f"Bearer {placed.open_key}"},
                        json={"model": "qwen", "max_tokens": 3, "stream": i % 3 == 1,
                              "messages": _conversation(i, 1 + i % 3)})))
            for job in jobs:
                job.exception()  # 5xx and dropped streams are part of the mix
    finally:
        placed.chat_faults()
    admin = {"Authorization": f"Bearer {placed.admin_token}"}
    deadline, seen = time.monotonic() + 10, []
    while time.monotonic() < deadline:
        seen = [(b["in_flight"], b["prefill_pending"])
                for url in placed.base_urls for _ in range(6)  # new connections: both workers
                for b in httpx.get(url + "/health/detailed", headers=admin,
                                   timeout=10).json()["pools"]["chat"]["backends"]]
        if set(seen) == {(0, 0)}:
            break
        time.sleep(0.2)
    assert set(seen) == {(0, 0)}, seen
