"""The README's local-stack commands, run as a newcomer would: make stack-up, use it, make stack-down."""

from __future__ import annotations

import os
import random
import secrets
import socket
import ssl
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import openai
import pytest

from stacks import LISTEN_PORTS, free_port

ROOT = Path(__file__).resolve().parents[2]


def _free_block(size: int = 6) -> int:
    """A port base whose next `size` ports are all free (the stack's fixed layout, shifted)."""
    for _ in range(50):
        base = random.randrange(LISTEN_PORTS.start, LISTEN_PORTS.stop - size, 10)
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
    gateway_port = _free_block(2)  # two gateway instances, on this port and the next
    env = {**os.environ, "STACK_STATE_DIR": str(tmp_path), "STACK_PORT_BASE": str(_free_block()),
           "GATEWAY_PORT": str(gateway_port), "STACK_REDIS_PORT": str(free_port()),
           "STACK_SIM_ARGS": "--ttft-ms 0 --itl-ms 40", "ADMIN_TOKEN": secrets.token_urlsafe(24),
           "GATEWAY_REPLICAS": "2", "STACK_HTTPS_PORT": str(free_port()),
           "STACK_HTTP_PORT": str(free_port())}
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
    # Idle backends tie and the balancer breaks ties at random: with 11 requests, all on one
    # replica happened once in CI (odds about 1 in 1,000). With 41: about 1 in 10^12.
    with ThreadPoolExecutor(4) as pool:
        chats = list(pool.map(lambda _: client.chat.completions.create(
            model="qwen", messages=[{"role": "user", "content": "hi"}], max_tokens=2), range(40)))
    assert all(chat.choices[0].message.content for chat in chats)
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
    # 40 ms between tokens: the last events arrive spread out, not in one burst at the end.
    assert len(arrivals) >= 9 and arrivals[-1] - arrivals[-4] > 0.08

    base_port = int(env["STACK_PORT_BASE"])
    served = [httpx.get(f"http://127.0.0.1:{base_port + i}/sim/stats").json()["by_endpoint"]
              .get("/v1/chat/completions", 0) for i in (1, 2)]
    assert min(served) >= 1, served  # both chat replicas took traffic

    pids = (state / "pids.json").read_text()
    assert all(name in pids for name in ("redis", "nginx", "gateway2", "chat0", "chat1", "text2sql", "embed", "rerank", "gateway"))


def test_stack_behind_tls_with_two_gateways_holds_one_rpm_limit(make_stack):
    base, env, state = make_stack
    https = f"https://127.0.0.1:{env['STACK_HTTPS_PORT']}"
    ca = ssl.create_default_context(cafile=str(state / "certs" / "cert-fullchain.crt"))
    created = httpx.post(base + "/admin/orgs", headers={"X-Admin-Token": env["ADMIN_TOKEN"]},
                         json={"name": "tls-team", "rpm_limit": 10})
    key = created.json()["api_key"]
    client = openai.OpenAI(base_url=https + "/v1", api_key=key, max_retries=0,
                           http_client=httpx.Client(verify=ca))
    chunks = list(client.chat.completions.create(model="qwen", stream=True, max_tokens=4,
                                                 messages=[{"role": "user", "content": "hi"}]))
    assert len(chunks) >= 5 and chunks[0].choices[0].delta.role == "assistant"
    with httpx.Client(verify=ca, headers={"Authorization": f"Bearer {key}"}) as c:
        codes = [c.post(https + "/v1/chat/completions", json={
            "model": "qwen", "messages": [{"role": "user", "content": "x"}], "max_tokens": 1}).status_code
            for _ in range(20)]
        headers = c.get(https + "/v1/models").headers
    assert codes.count(200) == 9 and codes.count(429) == 11  # 10 a minute, the stream was the first
    assert "max-age" in headers["strict-transport-security"]
    # nginx spread the requests over both gateway instances, yet the limit held exactly.
    logs = [(state / "logs" / f"{name}.log").read_text() for name in ("gateway", "gateway2")]
    assert all('"org":"' + created.json()["org"]["id"] in log for log in logs)


def test_gatewayctl_smoke_passes_against_the_local_stack_over_https(make_stack):
    _base, env, state = make_stack
    ctl = str(Path(sys.executable).with_name("gatewayctl"))
    proc = subprocess.run([ctl, "smoke", "--base-url", f"https://127.0.0.1:{env['STACK_HTTPS_PORT']}",
                           "--cacert", str(state / "certs" / "cert-fullchain.crt")],
                          env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "0 failed" in proc.stdout
