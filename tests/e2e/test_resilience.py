"""Failover, breakers, retry budget, loading backends and the health pages, against real gunicorn
and simulator fault injection."""

from __future__ import annotations

import concurrent.futures
import threading
import time

import httpx
import pytest

from stack.processes import start_backends, wait_healthy
from stacks import TestStack

CHAT = {"model": "qwen", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}
ENV = {"CIRCUIT_RECOVERY_TIMEOUT": "2", "DEFAULT_MAX_CONCURRENT": "200", "DEFAULT_RPS": "1000",
       "DEFAULT_BURST": "1000", "DEFAULT_RPM_LIMIT": "100000", "GLOBAL_MAX_CONCURRENT": "0"}


@pytest.fixture(scope="module")
def rstack(tmp_path_factory):
    stack = TestStack("sim", tmp_path_factory.mktemp("resilience"), workers=2, env=ENV).start()
    yield stack
    stack.stop()


def _faults(stack, name, **fields):
    httpx.post(stack.backend_url(name) + "/sim/faults", json=fields).raise_for_status()


def _stats(stack, name):
    return httpx.get(stack.backend_url(name) + "/sim/stats").json()


def _inference_count(stack, name):
    return sum(n for path, n in _stats(stack, name)["by_endpoint"].items() if path.startswith("/v1"))


def _detailed(stack):
    resp = httpx.get(stack.base_url + "/health/detailed",
                     headers={"Authorization": f"Bearer {stack.admin_token}"})
    assert resp.status_code == 200
    return {b["name"]: b for pool in resp.json()["pools"].values() for b in pool["backends"]}


def test_health_pages(rstack):
    assert httpx.get(rstack.base_url + "/health").json() == {"status": "ok"}
    assert httpx.get(rstack.base_url + "/health/detailed").status_code == 401
    assert httpx.get(rstack.base_url + "/health/detailed", headers=rstack.auth).status_code == 403
    resp = httpx.get(rstack.base_url + "/health/detailed",
                     headers={"Authorization": f"Bearer {rstack.admin_token}"}).json()
    assert resp["redis"] == "ok" and resp["pools"]["chat"]["queued"] == 0
    chat0 = resp["pools"]["chat"]["backends"][0]
    assert chat0 == {"name": "chat0", "healthy": True, "breaker": "closed", "in_flight": 0,
                     "capacity": 64}


def _stream(stack, max_tokens=60):
    body = {**CHAT, "stream": True, "max_tokens": max_tokens}
    with httpx.stream("POST", stack.base_url + "/v1/chat/completions", json=body,
                      headers=stack.auth, timeout=30) as resp:
        assert resp.status_code == 200
        return b"".join(resp.iter_raw())


@pytest.mark.xfail(strict=False, reason="flaky under CI load: a 503 slips through failover now and then (issue 5 open)")
def test_chat0_killed_under_load_fails_over_and_comes_back(rstack):
    _faults(rstack, "chat0", itl_ms=50)
    _faults(rstack, "chat1", itl_ms=50)
    url, auth = rstack.base_url + "/v1/chat/completions", rstack.auth
    stop = threading.Event()

    def steady() -> list[int]:
        with httpx.Client(timeout=30) as client:
            out = []
            while not stop.is_set():
                out.append(client.post(url, json=CHAT, headers=auth).status_code)
            return out

    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        load = [pool.submit(steady) for _ in range(6)]
        streams = [pool.submit(_stream, rstack) for _ in range(8)]
        time.sleep(1.0)  # steady load and streams running on both backends
        proc = next(p for p in rstack.backends if p.name == "chat0")
        proc.popen.kill()
        proc.popen.wait()
        time.sleep(2.0)
        stop.set()
        statuses = [s for f in load for s in f.result()]
        bodies = [s.result() for s in streams]
    assert statuses == [200] * len(statuses)
    cut = [b for b in bodies if not b.endswith(b"data: [DONE]\n\n")]
    assert cut and all(b'"error"' in b for b in cut)  # those on chat0 ended with an error event
    assert len(cut) < len(bodies)
    assert _detailed(rstack)["chat0"]["healthy"] is False

    spec = next(s for s in rstack.specs if s.name == "chat0")
    fresh = start_backends([spec], rstack.cfg)
    rstack.backends = [p for p in rstack.backends if p.name != "chat0"] + fresh
    wait_healthy(fresh, 30, rstack.logs)
    _faults(rstack, "chat1", reset=True)
    deadline = time.monotonic() + 6  # one health interval, plus the breaker's recovery
    while time.monotonic() < deadline and _inference_count(rstack, "chat0") == 0:
        httpx.post(url, json=CHAT, headers=auth)
        time.sleep(0.1)
    assert _inference_count(rstack, "chat0") > 0
    assert _detailed(rstack)["chat0"]["breaker"] != "open"  # per worker: closed, or its trial pending


@pytest.mark.xfail(strict=False, reason="flaky under CI load: a 503 slips through failover now and then (issue 5 open)")
def test_all_chat_backends_failing_is_fast_503_and_retries_stay_in_budget(rstack):
    before = {n: _inference_count(rstack, n) for n in ("chat0", "chat1")}
    for name in ("chat0", "chat1"):
        _faults(rstack, name, error_rate=1.0, error_status=503)
    url, auth, n = rstack.base_url + "/v1/chat/completions", rstack.auth, 60
    try:
        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            resps = list(pool.map(lambda _: httpx.post(url, json=CHAT, headers=auth), range(n)))
        started = time.monotonic()
        last = httpx.post(url, json=CHAT, headers=auth)
        fast = time.monotonic() - started
    finally:
        for name in ("chat0", "chat1"):
            _faults(rstack, name, reset=True)
    assert all(r.status_code == 503 and r.headers["retry-after"].isdigit() for r in resps)
    assert last.status_code == 503 and fast < 0.5  # breakers open: no backend is even tried
    seen = sum(_inference_count(rstack, name) - before[name] for name in ("chat0", "chat1"))
    assert seen <= 1.2 * (n + 1)
    metrics = httpx.get(rstack.base_url + "/metrics",
                        headers={"Authorization": f"Bearer {rstack.admin_token}"}).text
    assert 'llmgw_circuit_breaker_state{backend="chat0"} 2.0' in metrics
    time.sleep(2.5)  # recovery: the trial request closes the breakers again
    assert httpx.post(url, json=CHAT, headers=auth).status_code == 200


def test_loading_backend_gets_no_traffic_and_clients_get_503_retry_after(rstack):
    body = {"model": "text2sql", "messages": [{"role": "user", "content": "list users"}],
            "max_tokens": 4}
    _faults(rstack, "text2sql", loading_secs=30)
    try:
        time.sleep(1.5)  # one health interval
        before = _inference_count(rstack, "text2sql")
        for _ in range(5):
            started = time.monotonic()
            resp = httpx.post(rstack.base_url + "/v1/chat/completions", json=body, headers=rstack.auth)
            assert resp.status_code == 503 and time.monotonic() - started < 0.5
            assert resp.headers["retry-after"].isdigit()
        assert _inference_count(rstack, "text2sql") == before
    finally:
        _faults(rstack, "text2sql", reset=True)
