"""Limits a client cannot bend: a repeated X-Request-ID, a length field the backend ignores,
and admissions that reach a stalled Redis after their callers gave up (issue 14, items 1-3)."""

from __future__ import annotations

import asyncio
import os
import signal
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
import redis

from burst import burst, counts
from stacks import TestStack

MSG = [{"role": "user", "content": "hello there"}]
GLOBAL_MAX = 150
SAME_ID = {"X-Request-ID": "the-same-id-every-time"}


@pytest.fixture(scope="module")
def adv(tmp_path_factory):
    stack = TestStack("sim", tmp_path_factory.mktemp("adversarial"), workers=2, replicas=2,
                      sim_args=("--ttft-ms", "0", "--itl-ms", "0"),
                      env={"CONCURRENCY_LEASE_SECS": "3", "GLOBAL_MAX_CONCURRENT": str(GLOBAL_MAX),
                           "UPSTREAM_TIMEOUT_SECONDS": "8", "REDIS_TIMEOUT_SECS": "10"}).start()
    yield stack
    stack.stop()


async def _burst(stack, key: str, n: int, headers: dict) -> Counter:
    """n requests that arrive at once (tests/burst.py), alternating between the gateway
    instances: (status, code) counts."""
    return counts(await burst(stack.base_urls, "/v1/chat/completions",
                              {"model": "qwen", "messages": MSG, "max_tokens": 1},
                              {"Authorization": f"Bearer {key}", **headers}, n))


def test_a_repeated_request_id_does_not_bend_rpm(adv):
    org = adv.open_org(rpm_limit=100)
    assert asyncio.run(_burst(adv, org["api_key"], 1000, SAME_ID)) == {
        (200, ""): 100, (429, "limit_rpm"): 900}


def test_a_repeated_request_id_does_not_bend_max_concurrent(adv):
    org = adv.open_org(max_concurrent=100)
    adv.chat_faults(ttft_ms=3000)  # every admitted request holds its slot for 3 s
    try:
        statuses = asyncio.run(_burst(adv, org["api_key"], 1000, SAME_ID))
    finally:
        adv.chat_faults()
    assert statuses == {(200, ""): 100, (429, "limit_concurrent"): 900}


def test_a_repeated_request_id_does_not_bend_the_global_cap(adv):
    org = adv.open_org()
    adv.chat_faults(ttft_ms=3000)
    try:
        statuses = asyncio.run(_burst(adv, org["api_key"], 600, SAME_ID))
    finally:
        adv.chat_faults()
    # Admitted: answered, or (the burst arrives at once and one worker may take more of it
    # than its 2 x 64 backend slots) admitted and then out of backend capacity for the 2 s
    # queue wait while every slot held its 3 s request.
    admitted = statuses.pop((200, ""), 0) + statuses.pop((503, "no_capacity"), 0)
    assert admitted == GLOBAL_MAX, statuses
    assert statuses == {(429, "limit_global_concurrent"): 600 - GLOBAL_MAX}


def test_the_client_request_id_is_still_echoed_for_correlation(adv):
    org = adv.open_org()
    resp = httpx.post(adv.base_url + "/v1/chat/completions", timeout=30,
                      json={"model": "qwen", "messages": MSG, "max_tokens": 1},
                      headers={"Authorization": f"Bearer {org['api_key']}", **SAME_ID})
    assert resp.status_code == 200 and resp.headers["x-request-id"] == SAME_ID["X-Request-ID"]


def _daily(stack, org_id: str) -> dict:
    with stack.admin() as admin:
        return admin.get(f"/admin/quota/{org_id}").json()["limits"]


def test_completions_cannot_reserve_on_a_field_the_backend_ignores(adv):
    """/v1/completions obeys max_tokens only: max_completion_tokens=1 beside max_tokens=1000
    once reserved 1 token and generated 1000."""
    org = adv.open_org(daily_token_limit=3000)
    auth = {"Authorization": f"Bearer {org['api_key']}"}
    loophole = {"model": "qwen", "prompt": "hi", "max_completion_tokens": 1, "max_tokens": 1000,
                "ignore_eos": True}
    with httpx.Client(base_url=adv.base_url, headers=auth, timeout=30) as client:
        refused = [client.post("/v1/completions", json=loophole) for _ in range(30)]
        assert {r.status_code for r in refused} == {400}
        assert {r.json()["error"]["param"] for r in refused} == {"max_tokens"}
        within = client.post("/v1/completions", json={**loophole, "max_tokens": 50})
        default = client.post("/v1/completions", json={k: v for k, v in loophole.items()
                                                        if k != "max_tokens"})
    assert within.status_code == 200 and within.json()["usage"]["completion_tokens"] == 50
    assert default.status_code == 200 and default.json()["usage"]["completion_tokens"] == 16
    time.sleep(0.5)  # settlements
    used = _daily(adv, org["org"]["id"])["daily_token_limit"]["used"]
    billed = within.json()["usage"]["total_tokens"] + default.json()["usage"]["total_tokens"]
    assert used == billed, (used, billed)


# ---- a Redis that stalls: admissions that arrive after their callers gave up ----

def _chat(stack, key: str) -> httpx.Response:
    return httpx.post(stack.base_url + "/v1/chat/completions", timeout=30,
                      json={"model": "qwen", "messages": MSG, "max_tokens": 2},
                      headers={"Authorization": f"Bearer {key}"})


def _leases(stack, org_id: str) -> int:
    r = redis.Redis.from_url(stack.redis_url)
    now_ms = int(r.time()[0]) * 1000
    return r.zcount("llmgw:conc:{" + org_id + "}", now_ms, "+inf")


def _load_until(stack, key: str, stop: threading.Event, clients: int) -> list[httpx.Response]:
    done: list[httpx.Response] = []

    def client() -> None:
        while not stop.is_set():
            done.append(_chat(stack, key))
    threads = [threading.Thread(target=client) for _ in range(clients)]
    for t in threads:
        t.start()
    stop.wait()
    for t in threads:
        t.join()
    return done


def test_admissions_that_reach_a_stalled_redis_late_take_nothing(tmp_path):
    """SIGSTOP redis-server for 3 s under load: every admission times out, the fail-open
    policy serves the requests locally, and their scripts wait in Redis's socket. On SIGCONT
    they must do nothing: no leases that nobody settles (which refused the organisation with
    limit_concurrent until they expired), no request counted a second time."""
    stack = TestStack("sim", tmp_path, workers=2, sim_args=("--ttft-ms", "0", "--itl-ms", "0"),
                      env={"LIMITER_FAILURE_POLICY": "open", "REDIS_TIMEOUT_SECS": "1",
                           "CONCURRENCY_LEASE_SECS": "60"}).start()
    try:
        org = stack.open_org(max_concurrent=40)
        key, org_id = org["api_key"], org["org"]["id"]
        with ThreadPoolExecutor(8) as pool:
            assert all(r.status_code == 200 for r in pool.map(lambda _: _chat(stack, key), range(24)))
        time.sleep(0.5)
        before = _daily(stack, org_id)["daily_request_limit"]["used"]
        stop = threading.Event()
        with ThreadPoolExecutor(1) as pool:
            load = pool.submit(_load_until, stack, key, stop, 16)
            time.sleep(1)
            os.kill(stack.redis.popen.pid, signal.SIGSTOP)
            time.sleep(3)
            os.kill(stack.redis.popen.pid, signal.SIGCONT)
            time.sleep(2)
            stop.set()
            served = load.result()
        time.sleep(1)  # settlements
        statuses = Counter(r.status_code for r in served)
        by_redis = sum("x-ratelimit-limit-requests" in r.headers for r in served)
        figures = {"served": dict(statuses), "admitted by Redis": by_redis,
                   "admitted locally": statuses[200] - by_redis,
                   "counted in Redis": _daily(stack, org_id)["daily_request_limit"]["used"] - before,
                   "leases left": _leases(stack, org_id)}
        figures["after"] = dict(Counter(r.status_code for r in ThreadPoolExecutor(20).map(
            lambda _: _chat(stack, key), range(40))))
        # The stall was felt: requests were admitted locally while it lasted (about 16 a
        # second of stall on a quiet machine; a loaded CI machine once made exactly 20).
        assert figures["admitted locally"] >= 10, figures
        assert figures["leases left"] == 0, figures  # held for requests answered long ago
        assert figures["counted in Redis"] == by_redis, figures  # none counted twice
        assert statuses == {200: len(served)} and figures["after"] == {200: 40}, figures
    finally:
        os.kill(stack.redis.popen.pid, signal.SIGCONT)
        stack.stop()
