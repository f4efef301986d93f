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


def _gauge(stack, series: str) -> float:
    """A gauge kept as a max over live workers (llmgw_backend_up, breaker state)."""
    text = httpx.get(stack.base_url + "/metrics",
                     headers={"Authorization": f"Bearer {stack.admin_token}"}).text
    return float(next(row for row in text.splitlines() if row.startswith(series + " ")).split()[-1])


def _up(stack, backend, pool) -> float:
    """0 only once every worker sees the backend down."""
    return _gauge(stack, f'llmgw_backend_up{{backend="{backend}",pool="{pool}"}}')


def test_health_pages(rstack):
    assert httpx.get(rstack.base_url + "/health").json() == {"status": "ok"}
    assert httpx.get(rstack.base_url + "/health/detailed").status_code == 401
    assert httpx.get(rstack.base_url + "/health/detailed", headers=rstack.auth).status_code == 403
    resp = httpx.get(rstack.base_url + "/health/detailed",
                     headers={"Authorization": f"Bearer {rstack.admin_token}"}).json()
    assert resp["redis"] == "ok" and resp["pools"]["chat"]["queued"] == 0
    chat0 = resp["pools"]["chat"]["backends"][0]
    state = chat0.pop("state")  # the state view (tests/e2e/test_backend_state.py)
    assert chat0 == {"name": "chat0", "healthy": True, "breaker": "closed", "suspect": False,
                     "in_flight": 0, "prefill_pending": 0, "capacity": 64}
    assert set(state) == {"running", "waiting", "kv_usage", "prefix_hit_ratio", "prefix_hits",
                          "prefix_queries", "age_secs", "fresh", "error", "failures"}


def _stream(stack, max_tokens=60, started: threading.Semaphore | None = None):
    body = {**CHAT, "stream": True, "max_tokens": max_tokens}
    with httpx.stream("POST", stack.base_url + "/v1/chat/completions", json=body,
                      headers=stack.auth, timeout=30) as resp:
        assert resp.status_code == 200
        chunks = resp.iter_raw()
        first = next(chunks)  # the backend is generating
        if started is not None:
            started.release()
        return first + b"".join(chunks)


@pytest.fixture
def kstack(tmp_path):
    """A stack of its own: killing chat0 must not leave a shared stack broken. The breakers'
    recovery stays at its 30 s default, so chat0 can only come back through a health check."""
    env = {k: v for k, v in ENV.items() if k != "CIRCUIT_RECOVERY_TIMEOUT"}
    stack = TestStack("sim", tmp_path, workers=2, env=env).start()
    yield stack
    stack.stop()


def _steady(url, auth, stop, out):
    """Back-to-back non-streaming requests on one connection until `stop`."""
    with httpx.Client(timeout=30) as client:
        while not stop.is_set():
            resp = client.post(url, json=CHAT, headers=auth)
            out.append((resp.status_code, resp.text[:200] if resp.status_code != 200 else ""))


def _poll(check, secs, what):
    deadline = time.monotonic() + secs
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {secs} s: {what}")
        time.sleep(0.1)


def test_chat0_killed_under_load_fails_over_and_comes_back(kstack):
    for name in ("chat0", "chat1"):
        _faults(kstack, name, itl_ms=50)
    url, auth = kstack.base_url + "/v1/chat/completions", kstack.auth
    stop, results = threading.Event(), []
    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        load = [pool.submit(_steady, url, auth, stop, results) for _ in range(6)]
        # Steady load, as in production: the retry budget's window has seen some traffic.
        _poll(lambda: len(results) >= 60, 30, "60 requests served before the kill")
        started = threading.Semaphore(0)
        streams = [pool.submit(_stream, kstack, 60, started) for _ in range(8)]
        for _ in streams:  # all 8 generating (least-in-flight spreads them over both backends)
            assert started.acquire(timeout=20)
        served_before = len(results)
        proc = next(p for p in kstack.backends if p.name == "chat0")
        proc.popen.kill()
        proc.popen.wait()
        # Out of rotation in every worker within one health interval (1 s here), plus slack.
        _poll(lambda: _up(kstack, "chat0", "chat") == 0, 3, "chat0 out of rotation")
        _poll(lambda: len(results) >= served_before + 60, 30, "60 requests after the kill")
        stop.set()
        for f in load:
            f.result()
        bodies = [s.result() for s in streams]
    failed = [r for r in results if r[0] != 200]
    assert not failed, f"{len(failed)} of {len(results)} failed: {failed[:3]}"
    cut = [b for b in bodies if not b.endswith(b"data: [DONE]\n\n")]
    assert cut and all(b'"error"' in b for b in cut)  # those on chat0 ended with an error event
    assert len(cut) < len(bodies)

    spec = next(s for s in kstack.specs if s.name == "chat0")
    fresh = start_backends([spec], kstack.cfg)
    kstack.backends = [p for p in kstack.backends if p.name != "chat0"] + fresh
    wait_healthy(fresh, 30, kstack.logs)
    _faults(kstack, "chat1", reset=True)

    def chat0_serves() -> bool:
        httpx.post(url, json=CHAT, headers=auth)
        return _inference_count(kstack, "chat0") > 0
    # Health checks run every second here; the breaker's own recovery would take 30 s.
    _poll(chat0_serves, 8, "chat0 back in rotation after a passing health check")
    _poll(lambda: _gauge(kstack, 'llmgw_circuit_breaker_state{backend="chat0"}') < 2, 5,
          "no worker's breaker for chat0 still open")


def test_all_chat_backends_failing_is_fast_503_and_retries_stay_in_budget(rstack):
    before = {n: _inference_count(rstack, n) for n in ("chat0", "chat1")}
    for name in ("chat0", "chat1"):
        _faults(rstack, name, error_rate=1.0, error_status=503)
    url, auth, n = rstack.base_url + "/v1/chat/completions", rstack.auth, 60
    try:
        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            resps = list(pool.map(lambda _: httpx.post(url, json=CHAT, headers=auth), range(n)))
        seen = sum(_inference_count(rstack, name) - before[name] for name in ("chat0", "chat1"))
        started = time.monotonic()
        last = httpx.post(url, json=CHAT, headers=auth)
        secs = time.monotonic() - started
    finally:
        for name in ("chat0", "chat1"):
            _faults(rstack, name, reset=True)
    assert all(r.status_code == 503 and r.headers["retry-after"].isdigit() for r in resps)
    assert seen <= 1.2 * n
    # Breakers open: answered at once, not after the 2 s queue timeout.
    assert last.status_code == 503 and last.headers["retry-after"].isdigit() and secs < 1.5
    metrics = httpx.get(rstack.base_url + "/metrics",
                        headers={"Authorization": f"Bearer {rstack.admin_token}"}).text
    assert 'llmgw_circuit_breaker_state{backend="chat0"} 2.0' in metrics
    # Recovery (2 s here): a trial request closes the breakers again.
    _poll(lambda: httpx.post(url, json=CHAT, headers=auth).status_code == 200, 10,
          "a request served after the breakers' recovery time")


def test_loading_backend_gets_no_traffic_and_clients_get_503_retry_after(rstack):
    body = {"model": "text2sql", "messages": [{"role": "user", "content": "list users"}],
            "max_tokens": 4}
    _faults(rstack, "text2sql", loading_secs=30)
    try:
        _poll(lambda: _up(rstack, "text2sql", "text2sql") == 0, 10,
              "every worker's health check sees text2sql loading")
        before = _inference_count(rstack, "text2sql")
        for _ in range(5):
            started = time.monotonic()
            resp = httpx.post(rstack.base_url + "/v1/chat/completions", json=body, headers=rstack.auth)
            assert resp.status_code == 503 and time.monotonic() - started < 1.5  # not queued 2 s
            assert resp.headers["retry-after"].isdigit()
        assert _inference_count(rstack, "text2sql") == before
    finally:
        _faults(rstack, "text2sql", reset=True)
