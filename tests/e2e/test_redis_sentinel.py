"""The gateway behind Redis Sentinel: a primary, a replica and three sentinels (real
redis-server processes on loopback). The primary is killed (SIGKILL) under steady load; the
gateway follows the promotion without a restart, known keys keep working meanwhile (the open
failure policy), and afterwards the limits are exact again."""

from __future__ import annotations

import asyncio
import threading
import time
from collections import Counter

import httpx
import pytest

from burst import burst, counts
from redis_topology import MASTER_NAME, SentinelGroup
from stacks import TestStack

CHAT = {"model": "qwen", "messages": [{"role": "user", "content": "hello there"}], "max_tokens": 1}
LOADERS = 6  # clients sending one request after another
LIMIT = 100


@pytest.fixture(scope="module")
def sentinel_stack(tmp_path_factory):
    group = SentinelGroup(tmp_path_factory.mktemp("sentinel-redis"))
    stack = TestStack("sim", tmp_path_factory.mktemp("sentinel-stack"), workers=2,
                      sim_args=("--ttft-ms", "0", "--itl-ms", "0"),
                      env={"REDIS_SENTINELS": group.addresses, "REDIS_MASTER_NAME": MASTER_NAME,
                           "REDIS_TIMEOUT_SECS": "0.5", "CONCURRENCY_LEASE_SECS": "3",
                           "LIMITER_FAILURE_POLICY": "open"})
    # REDIS_URL's host is not used: the sentinels name the primary.
    stack.cfg.external_redis_url = "redis://sentinel-named/0"
    try:
        stack.start()
        yield stack, group
    finally:
        stack.stop()
        group.stop()


class _Load:
    """LOADERS clients, each sending chat requests back to back; every answer noted with the
    time it came and whether the shared (Redis) limiter admitted it: only then does it carry
    the x-ratelimit headers."""

    def __init__(self, url: str, key: str) -> None:
        self.url, self.key = url, key
        self.answers: list[tuple[float, int, bool]] = []
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, daemon=True) for _ in range(LOADERS)]

    def _run(self) -> None:
        with httpx.Client(base_url=self.url, timeout=30,
                          headers={"Authorization": f"Bearer {self.key}"}) as client:
            while not self._stop.is_set():
                try:
                    resp = client.post("/v1/chat/completions", json=CHAT)
                    shared = "x-ratelimit-limit-requests" in resp.headers
                    self.answers.append((time.monotonic(), resp.status_code, shared))
                except httpx.HTTPError:
                    self.answers.append((time.monotonic(), 0, False))

    def __enter__(self) -> "_Load":
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(60)


def _wait_for(check, timeout: float, what: str) -> float:
    deadline = time.monotonic() + timeout
    while (value := check()) is None:
        assert time.monotonic() < deadline, what
        time.sleep(0.02)
    return value


def _requests_counted(stack: TestStack, org_id: str) -> int:
    with stack.admin() as client:
        resp = client.get(f"/admin/quota/{org_id}")
        resp.raise_for_status()
        return resp.json()["limits"]["daily_request_limit"]["used"]


def test_a_failover_under_load_is_followed_without_a_restart(sentinel_stack, record_property):
    stack, group = sentinel_stack
    org = stack.open_org(max_concurrent=LIMIT)
    old = group.primary
    with _Load(stack.base_url, org["api_key"]) as load:
        _wait_for(lambda: len(load.answers) > 200 or None, 30, "steady load before the kill")
        killed = time.monotonic()
        group.kill(old)
        promoted = _wait_for(lambda: time.monotonic() if group.named_primary() not in (old, None)
                             else None, 30, "a sentinel promotes the replica")
        back = _wait_for(lambda: next((t for t, status, shared in load.answers
                                       if t > promoted and status == 200 and shared), None),
                         30, "a request admitted by the new primary")
        time.sleep(1.0)  # some load on the new primary
    answers = load.answers
    during = [status for t, status, _ in answers if killed <= t <= back]
    after = [status for t, status, _ in answers if t > back]
    recovery = back - promoted
    record_property("promotion_secs", round(promoted - killed, 2))
    record_property("served_again_after_promotion_secs", round(recovery, 3))
    print(f"primary killed; promoted after {promoted - killed:.2f} s; shared limiter back "
          f"{recovery:.3f} s after the promotion; answers meanwhile: {Counter(during)}")
    assert recovery < 10, recovery
    # The open failure policy: while no primary answers, each worker admits on its own at its
    # share of the limits, and keys it knows keep working.
    assert during and Counter(during)[200] == len(during), Counter(during)
    assert after and set(after) == {200}, Counter(after)
    # What asynchronous replication may lose: admissions written to the old primary in the
    # moment before it died and not yet copied. Each is a request counted nowhere.
    shared_admitted = sum(1 for _, status, shared in answers if status == 200 and shared)
    lost = shared_admitted - _requests_counted(stack, org["org"]["id"])
    record_property("admissions_lost_in_failover", lost)
    print(f"admissions by the shared limiter: {shared_admitted}; lost in the failover: {lost}")
    assert 0 <= lost <= LOADERS, lost  # at most the requests in flight at the kill


def test_limits_are_exact_again_after_the_failover(sentinel_stack):
    """1,000 requests at once against max_concurrent 100 on the new primary: at most 100."""
    stack, group = sentinel_stack
    assert group.named_primary() != group.primary or len(group.procs) == 5
    org = stack.open_org(max_concurrent=LIMIT)
    stack.chat_faults(ttft_ms=1500)  # the admitted ones hold their lease
    try:
        got = counts(asyncio.run(burst([stack.base_url], "/v1/chat/completions", CHAT,
                                       {"Authorization": f"Bearer {org['api_key']}"}, 1000)))
    finally:
        stack.chat_faults()
    admitted = got[(200, "")] + got[(503, "backend_unavailable")]
    assert set(got) <= {(200, ""), (429, "limit_concurrent"), (503, "backend_unavailable")}, got
    assert admitted == LIMIT, got
