"""Graceful drain: 200 streams in flight survive a HUP reload and a SIGTERM intact, and no
request is refused during the reload."""

from __future__ import annotations

import asyncio
import os
import signal

import httpx
import pytest

from stacks import E2E_ROUTING, TestStack

OPEN = {"DEFAULT_MAX_CONCURRENT": "500", "DEFAULT_RPS": "1000", "DEFAULT_BURST": "1000",
        "DEFAULT_RPM_LIMIT": "100000", "DEFAULT_TPM_LIMIT": "100000000", "GLOBAL_MAX_CONCURRENT": "0",
        "GRACEFUL_TIMEOUT_SECS": "30"}
BODY = {"model": "qwen", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 60,
        "ignore_eos": True, "stream": True}
SMALL = {**BODY, "stream": False, "max_tokens": 2}


@pytest.fixture
def dstack(tmp_path):
    routing = tmp_path / "routing.yaml"
    routing.write_text(E2E_ROUTING.read_text().replace("max_num_seqs: 64", "max_num_seqs: 512"))
    stack = TestStack("sim", tmp_path, workers=2, routing=routing, env=OPEN,
                      sim_args=("--itl-ms", "50")).start()
    yield stack
    stack.stop()


async def _stream(client, stack, started: asyncio.Queue) -> str:
    async with client.stream("POST", stack.base_url + "/v1/chat/completions", json=BODY,
                             headers=stack.auth) as resp:
        assert resp.status_code == 200
        chunks = resp.aiter_raw()
        first = await anext(chunks)  # generating: in flight on a worker
        started.put_nowait(None)
        return (first + b"".join([c async for c in chunks])).decode()


async def _small(client, stack):
    try:
        resp = await client.post(stack.base_url + "/v1/chat/completions", headers=stack.auth,
                                 json=SMALL)
        return resp.status_code
    except httpx.HTTPError as exc:
        return type(exc).__name__


async def _trickle(client, stack, until: asyncio.Event) -> list:
    """A new small request every 50 ms until `until` and at least 10, not waiting for the
    earlier ones (some wait in the listen backlog while the new workers boot); each outcome,
    status or error."""
    sent = []
    while not until.is_set() or len(sent) < 10:
        sent.append(asyncio.create_task(_small(client, stack)))
        await asyncio.sleep(0.05)
    return await asyncio.gather(*sent)


async def _during(stack, signum, trickle: bool):
    """200 streams, then `signum` to the gunicorn master while all are generating. With
    `trickle`, new requests go on throughout: on the streams' client, which reuses their
    keep-alive connections as they finish, and on fresh connections."""
    limits = httpx.Limits(max_connections=400)
    async with httpx.AsyncClient(timeout=60, limits=limits) as client, \
            httpx.AsyncClient(timeout=60, limits=httpx.Limits(max_keepalive_connections=0)) as fresh:
        started: asyncio.Queue = asyncio.Queue()
        streams = [asyncio.create_task(_stream(client, stack, started)) for _ in range(200)]
        for _ in streams:
            await asyncio.wait_for(started.get(), 60)
        os.kill(stack.gateway.popen.pid, signum)
        done = asyncio.Event()
        trickles = [asyncio.create_task(_trickle(c, stack, done)) for c in (client, fresh)] \
            if trickle else []
        texts = await asyncio.gather(*streams)
        await asyncio.sleep(1.0)  # and on past the streams' end, when old workers let go
        done.set()
        return texts, [o for t in trickles for o in await t]


def _intact(text: str) -> bool:
    return text.endswith("data: [DONE]\n\n") and '"error"' not in text and text.count('"content"') >= 60


def test_hup_reload_lets_200_streams_finish_and_refuses_nothing(dstack):
    _ = dstack.api_key
    texts, outcomes = asyncio.run(_during(dstack, signal.SIGHUP, trickle=True))
    assert sum(map(_intact, texts)) == 200
    assert set(outcomes) == {200}, outcomes  # none refused or reset


def test_sigterm_lets_200_streams_finish_then_exits(dstack):
    _ = dstack.api_key
    texts, _ = asyncio.run(_during(dstack, signal.SIGTERM, trickle=False))
    assert sum(map(_intact, texts)) == 200
    assert dstack.gateway.popen.wait(timeout=30) == 0
