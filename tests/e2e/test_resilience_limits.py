"""Time limits and the fair admission queue, against real gunicorn and the simulator."""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest

from stacks import TestStack

CHAT = {"model": "qwen", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}
OPEN = {"DEFAULT_MAX_CONCURRENT": "200", "DEFAULT_RPS": "1000", "DEFAULT_BURST": "1000",
        "DEFAULT_RPM_LIMIT": "100000", "DEFAULT_TPM_LIMIT": "10000000", "GLOBAL_MAX_CONCURRENT": "0"}


@pytest.fixture(scope="module")
def tstack(tmp_path_factory):
    # No retries here, so each limit shows alone in the timings.
    env = {**OPEN, "UPSTREAM_TIMEOUT_SECONDS": "1", "STREAM_IDLE_TIMEOUT_SECS": "1",
           "MAX_REQUEST_SECS": "3", "RETRY_MAX": "0"}
    stack = TestStack("sim", tmp_path_factory.mktemp("limits"), workers=1, env=env).start()
    yield stack
    stack.stop()


def _faults(stack, name, **fields):
    httpx.post(stack.backend_url(name) + "/sim/faults", json=fields).raise_for_status()


def _timed(fn):
    started = time.monotonic()
    return fn(), time.monotonic() - started


def test_hung_backend_is_cut_at_the_time_limit(tstack):
    body = {**CHAT, "model": "text2sql"}
    _faults(tstack, "text2sql", hang=True)
    try:
        url = tstack.base_url + "/v1/chat/completions"
        resp, secs = _timed(lambda: httpx.post(url, json=body, headers=tstack.auth, timeout=10))
        assert resp.status_code == 504 and 0.9 < secs < 2.5
        assert resp.json()["error"]["code"] == "upstream_timeout"
        resp, secs = _timed(lambda: httpx.post(url, json={**body, "stream": True},
                                               headers=tstack.auth, timeout=10))
        assert resp.status_code == 504 and 0.9 < secs < 2.5
    finally:
        _faults(tstack, "text2sql", reset=True)


def _stream_text(stack, body):
    resp = httpx.post(stack.base_url + "/v1/chat/completions", json={**body, "stream": True},
                      headers=stack.auth, timeout=20)
    assert resp.status_code == 200
    return resp.text


def test_slow_stream_is_cut_after_the_idle_limit(tstack):
    body = {**CHAT, "model": "text2sql", "max_tokens": 20}
    _faults(tstack, "text2sql", itl_ms=1500)
    try:
        text, secs = _timed(lambda: _stream_text(tstack, body))
    finally:
        _faults(tstack, "text2sql", reset=True)
    assert '"upstream_timeout"' in text and "[DONE]" not in text and secs < 2.5


def test_long_stream_is_cut_at_max_request_secs(tstack):
    body = {**CHAT, "model": "text2sql", "max_tokens": 200, "ignore_eos": True}
    _faults(tstack, "text2sql", itl_ms=100)  # 20 s of tokens, never idle for 1 s
    try:
        text, secs = _timed(lambda: _stream_text(tstack, body))
    finally:
        _faults(tstack, "text2sql", reset=True)
    assert "exceeded the gateway's limit of 3 s" in text and "[DONE]" not in text
    assert 2.9 < secs < 4.5


@pytest.fixture(scope="module")
def qstack(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("queue")
    routing = tmp / "routing.yaml"
    from stacks import E2E_ROUTING
    routing.write_text(E2E_ROUTING.read_text().replace("max_num_seqs: 64", "max_num_seqs: 4"))
    stack = TestStack("sim", tmp, workers=1, routing=routing, env=OPEN,
                      sim_args=("--ttft-ms", "400")).start()
    yield stack
    stack.stop()


async def _call(client, stack, key):
    started = time.monotonic()
    resp = await client.post(stack.base_url + "/v1/chat/completions", json={**CHAT, "max_tokens": 1},
                             headers={"Authorization": f"Bearer {key}"})
    return resp, time.monotonic() - started


async def _burst(stack, big, small):
    # 8 slots (2 backends x 4) at 0.4 s a request serve about 40 in the 2 s queue limit: 88
    # requests saturate the pool however fast the gateway itself is.
    async with httpx.AsyncClient(timeout=30, limits=httpx.Limits(max_connections=200)) as client:
        calls = [_call(client, stack, big) for _ in range(80)]
        calls += [_call(client, stack, small) for _ in range(8)]
        results = await asyncio.gather(*calls)
    return results[:80], results[80:]


def test_saturated_pool_queues_fairly_and_times_out_at_2s_with_503(qstack):
    big, small = qstack.create_org()["api_key"], qstack.create_org()["api_key"]
    bigs, smalls = asyncio.run(_burst(qstack, big, small))
    assert all(r.status_code == 200 for r, _ in smalls)  # 1 in 11 of the traffic, not starved
    served = [s for r, s in bigs if r.status_code == 200]
    refused = [(r, s) for r, s in bigs if r.status_code != 200]
    assert served and refused
    for resp, secs in refused:
        assert resp.status_code == 503 and resp.json()["error"]["code"] == "no_capacity"
        # Timed by the client, which opens 88 connections at once on a 2-core machine: up to
        # 1.5 s past the 2 s queue limit (a refusal without the limit would come only once
        # the queue drained, about 4.4 s in).
        assert resp.headers["retry-after"].isdigit() and 1.9 < secs < 3.5
    metrics = httpx.get(qstack.base_url + "/metrics",
                        headers={"Authorization": f"Bearer {qstack.admin_token}"}).text
    assert 'llmgw_queue_wait_seconds_count{pool="chat"}' in metrics
