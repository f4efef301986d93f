"""What a client sees when a backend fails: 5xx failover, one deadline across retries, and a
backend's own client errors relayed faithfully. Real gunicorn, Redis and simulators."""

from __future__ import annotations

import concurrent.futures
import time

import httpx
import pytest

from stacks import TestStack

CHAT = {"model": "qwen", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}
TIMEOUT = 2.0  # UPSTREAM_TIMEOUT_SECONDS and STREAM_IDLE_TIMEOUT_SECS of this stack
ENV = {"CIRCUIT_RECOVERY_TIMEOUT": "2", "UPSTREAM_TIMEOUT_SECONDS": str(TIMEOUT),
       "STREAM_IDLE_TIMEOUT_SECS": str(TIMEOUT), "DEFAULT_MAX_CONCURRENT": "200",
       "DEFAULT_RPS": "1000", "DEFAULT_BURST": "1000", "DEFAULT_RPM_LIMIT": "100000",
       "DEFAULT_TPM_LIMIT": "100000000", "GLOBAL_MAX_CONCURRENT": "0",
       # No hold on a failed replica: each test here sends it traffic and sees the retries
       # (test_failover.py covers the hold).
       "FAILOVER_HOLD_SECS": "0"}


@pytest.fixture(scope="module")
def ustack(tmp_path_factory):
    stack = TestStack("sim", tmp_path_factory.mktemp("upstream"), workers=2, env=ENV).start()
    yield stack
    stack.stop()


def _faults(stack, name, **fields):
    httpx.post(stack.backend_url(name) + "/sim/faults", json=fields).raise_for_status()


def _injected(stack, name) -> int:
    return httpx.get(stack.backend_url(name) + "/sim/stats").json()["injected_errors"]


def _breaker(stack, backend) -> float:
    """The breaker state's max over the live workers: 0 only once every worker's is closed."""
    text = httpx.get(stack.base_url + "/metrics",
                     headers={"Authorization": f"Bearer {stack.admin_token}"}).text
    series = f'llmgw_circuit_breaker_state{{backend="{backend}"}} '
    rows = [row for row in text.splitlines() if row.startswith(series)]
    return float(rows[0].split()[-1]) if rows else 0.0


def _all_breakers_closed(stack):
    """Earlier tests may have opened a breaker: traffic lets each worker's trial close it."""
    deadline = time.monotonic() + 20
    while any(_breaker(stack, b) for b in ("chat0", "chat1")):
        assert time.monotonic() < deadline, "chat breakers still open after 20 s"
        httpx.post(stack.base_url + "/v1/chat/completions", json=CHAT, headers=stack.auth)
        time.sleep(0.1)


def _chat(stack, body) -> tuple[int, str]:
    resp = httpx.post(stack.base_url + "/v1/chat/completions", json=body, headers=stack.auth,
                      timeout=30)
    return resp.status_code, resp.text


def _many(stack, body, n) -> list[tuple[int, str]]:
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        return list(pool.map(lambda _: _chat(stack, body), range(n)))


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
def test_a_500_from_one_replica_is_served_by_the_other(ustack, stream):
    _all_breakers_closed(ustack)
    # Steady traffic first, as in production: the retry budget (20% of the last 10 s of
    # requests, at least 3) has room for the retries a dying replica needs.
    _many(ustack, CHAT, 100)
    before = _injected(ustack, "chat0")
    _faults(ustack, "chat0", error_rate=1.0, error_status=500)
    try:
        results = _many(ustack, {**CHAT, "stream": stream}, 50)
    finally:
        _faults(ustack, "chat0", reset=True)
    failed = [r for r in results if r[0] != 200]
    assert _injected(ustack, "chat0") > before  # chat0 really was asked, and failed
    assert not failed, f"{len(failed)} of 50 failed: {failed[:2]}"
    if stream:
        assert all(text.endswith("data: [DONE]\n\n") for _, text in results)


POISON = 4  # requests a backend always fails: fewer than CIRCUIT_FAILURE_THRESHOLD (5)


def _poison(stack, names, body) -> tuple[list[int], int]:
    """Statuses of POISON requests while `names` answer every request with 500, and how many
    attempts those backends failed."""
    before = sum(_injected(stack, name) for name in names)
    for name in names:
        _faults(stack, name, error_rate=1.0, error_status=500)
    try:
        statuses = [_chat(stack, body)[0] for _ in range(POISON)]
    finally:
        for name in names:
            _faults(stack, name, reset=True)
    return statuses, sum(_injected(stack, name) for name in names) - before


def test_poison_requests_to_a_pool_of_one_do_not_shut_its_model_out(ustack):
    """A request that makes the backend fail every time counts once against its breaker:
    when each of its retries on the same backend counted, two such requests opened it and
    every tenant of the model got 503 for CIRCUIT_RECOVERY_TIMEOUT."""
    body = {**CHAT, "model": "text2sql"}
    statuses, attempts = _poison(ustack, ["text2sql"], body)
    assert statuses == [502] * POISON
    assert attempts == POISON  # no retry: no other backend to try
    assert _breaker(ustack, "text2sql") == 0
    healthy = _many(ustack, body, 20)
    assert [status for status, _ in healthy] == [200] * 20, healthy[:2]


def test_a_poison_request_tries_each_replica_once_and_counts_once(ustack):
    _all_breakers_closed(ustack)
    _many(ustack, CHAT, 100)  # room in the retry budget, as in production
    statuses, attempts = _poison(ustack, ["chat0", "chat1"], CHAT)
    assert statuses == [502] * POISON
    assert attempts == 2 * POISON  # each replica once; a third try went back to one of them
    assert _breaker(ustack, "chat0") == 0 and _breaker(ustack, "chat1") == 0
    assert [status for status, _ in _many(ustack, CHAT, 20)] == [200] * 20


def _timed_chat(stack, body) -> tuple[int, dict, float]:
    started = time.monotonic()
    resp = httpx.post(stack.base_url + "/v1/chat/completions", json=body, headers=stack.auth,
                      timeout=60)
    return resp.status_code, resp.json(), time.monotonic() - started


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
def test_a_hung_backend_costs_one_deadline_not_one_per_retry(ustack, stream):
    # text2sql is a pool of one: every retry goes back to the same hung backend.
    body = {**CHAT, "model": "text2sql", "stream": stream}
    _faults(ustack, "text2sql", hang=True)
    try:
        status, answer, secs = _timed_chat(ustack, body)
    finally:
        _faults(ustack, "text2sql", reset=True)
    assert status == 504 and answer["error"]["code"] == "upstream_timeout"
    # One deadline of 2 s for every attempt together (3 attempts took 6 s and more).
    assert TIMEOUT * 0.9 < secs < TIMEOUT * 2, secs


def test_a_body_trickled_past_the_deadline_is_cut_at_the_deadline(ustack):
    """The head comes at once and the body 16 bytes every 0.2 s (about 6 s in all): the one
    deadline covers the body too, so the client waits 2 s, not until the body is done."""
    body = {**CHAT, "model": "text2sql"}
    _faults(ustack, "text2sql", trickle_ms=200)
    try:
        status, answer, secs = _timed_chat(ustack, body)
    finally:
        _faults(ustack, "text2sql", reset=True)
    assert status == 504 and answer["error"]["code"] == "upstream_timeout", answer
    assert TIMEOUT * 0.9 < secs < TIMEOUT * 2, secs


# The simulator, like vLLM, counts more tokens than the model's 4,096 context; the gateway's
# own limit (8,192 by default) lets it through, so the backend itself refuses it.
LONG = {**CHAT, "messages": [{"role": "user", "content": "word " * 6000}]}


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
def test_a_backends_400_keeps_its_status_message_type_and_param(ustack, stream):
    status, text = _chat(ustack, {**LONG, "stream": stream})
    assert status == 400, text
    err = httpx.Response(400, content=text).json()["error"]
    assert "maximum context length is 4096 tokens" in err["message"]
    assert err["type"] == "BadRequestError" and err["param"] == "input_tokens"
    # vLLM sends the status number as its code; OpenAI clients expect a string or null.
    assert err["code"] == "invalid_request"


def test_a_backends_5xx_text_never_reaches_the_client(ustack):
    _all_breakers_closed(ustack)
    for name in ("chat0", "chat1"):
        _faults(ustack, name, error_rate=1.0, error_status=500)
    try:
        status, text = _chat(ustack, CHAT)
    finally:
        for name in ("chat0", "chat1"):
            _faults(ustack, name, reset=True)
    err = httpx.Response(status, content=text).json()["error"]
    assert status == 502 and err["code"] == "bad_gateway" and err["type"] == "server_error"
    assert "Simulated" not in err["message"] and "127.0.0.1" not in text
