"""The README's local-stack commands, run as a newcomer would: make stack-up, use it, make stack-down."""

from __future__ import annotations

import os
import random
import secrets
import socket
import subprocess
import time
from pathlib import Path

import httpx
import openai
import pytest

from stacks import free_port

ROOT = Path(__file__).resolve().parents[2]


def _free_block(size: int = 6) -> int:
    """A port base whose next `size` ports are all free (the stack's fixed layout, shifted)."""
    for _ in range(50):
        base = random.randrange(20000, 40000, 10)
        try:
            socks = []
            for port in range(base, base + size):
                s = socket.socket()
                s.bind(("127.0.0.1", port))
                socks.append(s)
            return base
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
    raise RuntimeError("no free port block")


@pytest.fixture
def make_stack(tmp_path):
    gateway_port = free_port()
    env = {**os.environ, "STACK_STATE_DIR": str(tmp_path), "STACK_PORT_BASE": str(_free_block()),
           "GATEWAY_PORT": str(gateway_port), "STACK_REDIS_PORT": str(free_port()),
           "STACK_SIM_ARGS": "--ttft-ms 0 --itl-ms 40", "ADMIN_TOKEN": secrets.token_urlsafe(24)}
    started = time.monotonic()
    up = subprocess.run(["make", "stack-up"], cwd=ROOT, env=env, capture_output=True, text=True,
                        timeout=300)
    assert up.returncode == 0, up.stdout + up.stderr
    assert "stack up in" in up.stdout, up.stdout
    print(f"make stack-up took {time.monotonic() - started:.1f} s")
    yield f"http://127.0.0.1:{gateway_port}", env, tmp_path
    down = subprocess.run(["make", "stack-down"], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=60)
    assert down.returncode == 0, down.stderr


def test_stack_up_serves_every_endpoint_then_stack_down_stops_it(make_stack):
    base, env, state = make_stack
    created = httpx.post(base + "/admin/orgs", json={"name": "newcomer"},
                         headers={"X-Admin-Token": env["ADMIN_TOKEN"]})
    assert created.status_code == 201, created.text
    key = created.json()["api_key"]
    auth = {"Authorization": f"Bearer {key}"}
    client = openai.OpenAI(base_url=base + "/v1", api_key=key, max_retries=0)
    for _ in range(10):
        chat = client.chat.completions.create(model="qwen", messages=[{"role": "user", "content": "hi"}],
                                              max_tokens=2)
        assert chat.choices[0].message.content
    assert client.completions.create(model="qwen", prompt="hi", max_tokens=2).choices[0].text
    assert client.embeddings.create(model="snowflake-arctic-embed", input="x").data[0].embedding
    assert httpx.post(base + "/v1/rerank", json={"model": "bge-reranker-v2-m3", "query": "q",
                                                 "documents": ["a", "b"]}, headers=auth).status_code == 200
    assert httpx.post(base + "/v1/text2sql", json={"messages": [{"role": "user", "content": "x"}],
                                                   "max_tokens": 2}, headers=auth).status_code == 200
    assert len(client.models.list().data) == 4

    arrivals, start = [], time.monotonic()
    for chunk in client.chat.completions.create(model="qwen", max_tokens=8, stream=True,
                                                messages=[{"role": "user", "content": "hi"}]):
        arrivals.append(time.monotonic() - start)
    assert len(arrivals) >= 9 and arrivals[-1] - arrivals[1] > 0.2  # spread out, not one burst

    base_port = int(env["STACK_PORT_BASE"])
    served = [httpx.get(f"http://127.0.0.1:{base_port + i}/sim/stats").json()["by_endpoint"]
              .get("/v1/chat/completions", 0) for i in (1, 2)]
    assert min(served) >= 1, served  # both chat replicas took traffic

    pids = (state / "pids.json").read_text()
    assert all(name in pids for name in ("redis", "chat0", "chat1", "text2sql", "embed", "rerank", "gateway"))
