"""Limits and quotas through 2 gateway instances x 4 gunicorn workers sharing one real Redis."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
import redis

from burst import Answer, burst, counts
from stacks import TestStack

MSG = [{"role": "user", "content": "hello there"}]


@pytest.fixture(scope="module")
def lim(tmp_path_factory):
    stack = TestStack("sim", tmp_path_factory.mktemp("limits"), workers=4, replicas=2,
                      sim_args=("--ttft-ms", "0", "--itl-ms", "0"),
                      env={"CONCURRENCY_LEASE_SECS": "3", "GLOBAL_MAX_CONCURRENT": "0",
                           "UPSTREAM_TIMEOUT_SECONDS": "8",
                           # 8 workers, 2 simulators and a 1,000-request client share 2 cores here:
                           # event-loop lag, not Redis, would exceed the 50 ms production limit.
                           "REDIS_TIMEOUT_SECS": "10"}).start()
    yield stack
    stack.stop()


async def _burst(stack, key: str, n: int, body: dict | None = None) -> list[httpx.Response]:
    """n requests at once, alternating between the gateway instances."""
    limits = httpx.Limits(max_connections=n, max_keepalive_connections=n)
    async with httpx.AsyncClient(timeout=60, limits=limits,
                                 headers={"Authorization": f"Bearer {key}"}) as client:
        urls = stack.base_urls
        return await asyncio.gather(*[
            client.post(urls[i % len(urls)] + "/v1/chat/completions",
                        json=body or {"model": "qwen", "messages": MSG, "max_tokens": 1})
            for i in range(n)])


def _flood(stack, key: str, n: int) -> list[Answer]:
    """n requests that arrive at once (tests/burst.py), alternating between the instances."""
    return asyncio.run(burst(stack.base_urls, "/v1/chat/completions",
                             {"model": "qwen", "messages": MSG, "max_tokens": 1},
                             {"Authorization": f"Bearer {key}"}, n))


def test_1000_concurrent_against_rpm_100_admit_exactly_100(lim):
    org = lim.open_org(rpm_limit=100)
    results = _flood(lim, org["api_key"], 1000)
    assert counts(results) == {(200, ""): 100, (429, "limit_rpm"): 900}, counts(results)
    refused = [r for r in results if r.status == 429]
    assert all(1 <= int(r.headers["retry-after"]) <= 60 for r in refused)
    assert refused[0].headers["x-ratelimit-limit-requests"] == "100"
    assert refused[0].headers["x-ratelimit-remaining-requests"] == "0"


def test_1000_concurrent_against_100_in_flight_admit_exactly_100(lim):
    org = lim.open_org(max_concurrent=100)
    lim.chat_faults(ttft_ms=5000)  # every admitted request holds its slot for 5 s
    try:
        results = _flood(lim, org["api_key"], 1000)
    finally:
        lim.chat_faults()
    assert counts(results) == {(200, ""): 100, (429, "limit_concurrent"): 900}, counts(results)


@pytest.mark.parametrize("stream", [False, True])
def test_clients_at_exactly_the_concurrency_limit_are_never_refused(lim, stream):
    """4 threads, each sending its next request as soon as it has an answer, against a limit
    of 4 in flight, through both gateway instances: the lease of an answer is free in Redis
    before that answer's end can reach its client (the settlement leaves first; for a
    stream, before the block that ends it), so no request ever finds 4 already running."""
    org = lim.open_org(max_concurrent=4)
    headers = {"Authorization": f"Bearer {org['api_key']}"}
    body = {"model": "qwen", "messages": MSG, "max_tokens": 3, "stream": stream}

    def client(i: int) -> Counter:
        seen = Counter()
        with httpx.Client(base_url=lim.base_urls[i % 2], headers=headers, timeout=30) as http:
            for _ in range(60):
                resp = http.post("/v1/chat/completions", json=body)
                complete = not stream or resp.text.endswith("data: [DONE]\n\n")
                seen[resp.status_code if complete else resp.text[:120]] += 1
        return seen
    with ThreadPoolExecutor(4) as pool:
        got = sum(pool.map(client, range(4)), Counter())
    assert got == {200: 240}, got


def test_refused_for_concurrency_uses_no_rpm_or_tpm(lim):
    org = lim.open_org(max_concurrent=1, rpm_limit=3)
    lim.chat_faults(ttft_ms=1500)
    try:
        results = asyncio.run(_burst(lim, org["api_key"], 20))
    finally:
        lim.chat_faults()
    assert Counter(r.status_code for r in results) == {200: 1, 429: 19}
    # 19 refusals took nothing: two more requests still fit in the minute's 3.
    assert [r.status_code for r in asyncio.run(_burst(lim, org["api_key"], 1))] == [200]
    assert [r.status_code for r in asyncio.run(_burst(lim, org["api_key"], 1))] == [200]
    assert asyncio.run(_burst(lim, org["api_key"], 1))[0].json()["error"]["code"] == "limit_rpm"


def test_openai_ratelimit_headers_on_every_answer(lim):
    org = lim.open_org(rpm_limit=50, tpm_limit=100_000)
    resp = httpx.post(lim.base_url + "/v1/chat/completions", headers={"Authorization": f"Bearer {org['api_key']}"},
                      json={"model": "qwen", "messages": MSG, "max_tokens": 4})
    assert resp.status_code == 200
    h = resp.headers
    assert (h["x-ratelimit-limit-requests"], h["x-ratelimit-remaining-requests"]) == ("50", "49")
    assert h["x-ratelimit-limit-tokens"] == "100000"
    assert 0 < int(h["x-ratelimit-remaining-tokens"]) < 100_000
    assert h["x-ratelimit-reset-requests"].endswith("s") and h["x-ratelimit-reset-tokens"].endswith("s")


@pytest.mark.parametrize("limits,body,param", [
    ({"max_output_tokens": 10}, {"max_tokens": 11}, "max_tokens"),
    ({"max_context_tokens": 50}, {"messages": [{"role": "user", "content": "word " * 400}]}, "messages"),
    ({"tpm_limit": 100, "max_output_tokens": 1000}, {"max_tokens": 500}, "max_tokens"),
])
def test_requests_that_can_never_pass_are_400_bad_input(lim, limits, body, param):
    org = lim.open_org(**limits)
    resp = httpx.post(lim.base_url + "/v1/chat/completions", headers={"Authorization": f"Bearer {org['api_key']}"},
                      json={"model": "qwen", "messages": MSG, **body})
    assert resp.status_code == 400, resp.text
    assert resp.json()["error"]["code"] == "bad_input" and resp.json()["error"]["param"] == param


def test_context_bound_is_checked_on_the_exact_count_not_the_estimate(lim):
    # 120 bytes of text estimate to ~200 tokens, over the bound, but the backend counts fewer.
    org = lim.open_org(max_context_tokens=120)
    resp = httpx.post(lim.base_url + "/v1/chat/completions", headers={"Authorization": f"Bearer {org['api_key']}"},
                      json={"model": "qwen", "messages": [{"role": "user", "content": "ab " * 40}],
                            "max_tokens": 2})
    assert resp.status_code == 200, resp.text


def test_missing_max_tokens_gets_the_orgs_max_output_tokens(lim):
    org = lim.open_org(max_output_tokens=3)
    resp = httpx.post(lim.base_url + "/v1/chat/completions", headers={"Authorization": f"Bearer {org['api_key']}"},
                      json={"model": "qwen", "messages": MSG})
    assert resp.status_code == 200 and resp.json()["usage"]["completion_tokens"] <= 3


def _redis(stack) -> redis.Redis:
    return redis.Redis.from_url(stack.redis_url, decode_responses=True)


def _in_flight(stack, org_id: str) -> int:
    r = _redis(stack)
    now_ms = int(r.time()[0]) * 1000
    return r.zcount("llmgw:conc:{" + org_id + "}", now_ms, "+inf")


def _quota(stack, org_id: str) -> dict:
    r = _redis(stack)
    keys = list(r.scan_iter("llmgw:q:{" + org_id + "}:d:*"))
    return {k: int(v) for k, v in r.hgetall(keys[0]).items()} if keys else {}


def test_daily_token_quota_is_never_exceeded(lim):
    org = lim.open_org(daily_token_limit=3000, max_output_tokens=16)
    body = {"model": "qwen", "messages": MSG, "max_tokens": 16}
    used, refused = 0, Counter()
    # Bursts until the quota is spent. Each burst's refunds free some of it again, less each
    # time, and how much depends on how many requests overlap: the number of bursts varies.
    for _ in range(40):
        time.sleep(0.5)  # let the last burst's settlements (just after each answer) land first
        results = asyncio.run(_burst(lim, org["api_key"], 100, body))
        used += sum(r.json()["usage"]["total_tokens"] for r in results if r.status_code == 200)
        refused.update(r.json()["error"]["code"] for r in results if r.status_code != 200)
        if all(r.status_code == 429 for r in results):
            break
    else:
        pytest.fail(f"40 bursts did not spend the quota ({used} tokens used)")
    assert set(refused) == {"quota_daily_tokens"}
    time.sleep(0.5)
    assert _quota(lim, org["org"]["id"])["tok"] == used
    # Spent up to less than one reservation (estimated prompt plus max_tokens), never over.
    assert 3000 - 150 < used <= 3000
    late = asyncio.run(_burst(lim, org["api_key"], 1, body))[0]
    assert late.status_code == 429 and int(late.headers["retry-after"]) > 0


def _stream_usage(stack, key: str, *, read: int | None = None, **options) -> dict | None:
    """Stream a chat answer asking for usage; read `read` events (None: all); the last usage seen."""
    last = None
    with httpx.stream("POST", stack.base_url + "/v1/chat/completions", timeout=30,
                      headers={"Authorization": f"Bearer {key}"},
                      json={"model": "qwen", "messages": MSG, "max_tokens": 12, "stream": True,
                            "stream_options": {"include_usage": True, **options}}) as resp:
        seen = 0
        for line in resp.iter_lines():
            if line.startswith("data: {"):
                chunk = __import__("json").loads(line[6:])
                last = chunk.get("usage") or last
                seen += 1
                if read is not None and seen >= read:
                    break
    return last


def test_billed_tokens_equal_the_backends_reported_usage(lim):
    org = lim.open_org()
    key, auth = org["api_key"], {"Authorization": f"Bearer {org['api_key']}"}
    reported = 0
    for _ in range(4):  # completed, non-streaming
        r = httpx.post(lim.base_url + "/v1/chat/completions", headers=auth,
                       json={"model": "qwen", "messages": MSG, "max_tokens": 9})
        reported += r.json()["usage"]["total_tokens"]
    for _ in range(3):  # completed, streaming
        reported += _stream_usage(lim, key)["total_tokens"]
    lim.chat_faults(itl_ms=250)  # disconnected: the client leaves while the backend waits between tokens
    try:
        for _ in range(2):
            reported += _stream_usage(lim, key, read=3, continuous_usage_stats=True)["total_tokens"]
        lim.chat_faults(error_rate=1.0)  # failed: refunded, nothing billed
        failed = [httpx.post(lim.base_url + "/v1/chat/completions", headers=auth,
                             json={"model": "qwen", "messages": MSG, "max_tokens": 9}).status_code
                  for _ in range(3)]
    finally:
        lim.chat_faults()
    assert failed == [502, 502, 502]
    time.sleep(1)
    with lim.admin() as admin:
        quota = admin.get(f"/admin/quota/{org['org']['id']}").json()["limits"]
        usage = admin.get("/admin/usage", params={"window": "1h", "limit": 500}).json()
    assert quota["daily_token_limit"]["used"] == reported
    mine = next(o for o in usage["orgs"] if o["org_id"] == org["org"]["id"])
    assert mine["prompt_tokens"] + mine["completion_tokens"] == reported
    assert mine["requests"] == 12 and mine["success"] == 7
    assert mine["errors"] == {"client_closed": 2, "bad_gateway": 3}
    assert quota["daily_request_limit"]["used"] == 12


def test_quota_routes_show_limit_used_remaining_reset(lim):
    org = lim.open_org(rpm_limit=30, daily_request_limit=1000)
    auth = {"Authorization": f"Bearer {org['api_key']}"}
    for _ in range(3):
        httpx.post(lim.base_url + "/v1/chat/completions", headers=auth,
                   json={"model": "qwen", "messages": MSG, "max_tokens": 2}).raise_for_status()
    time.sleep(0.5)
    with lim.admin() as admin:
        one = admin.get(f"/admin/quota/{org['org']['id']}").json()
        everyone = admin.get("/admin/quotas", params={"limit": 500}).json()
    rpm = one["limits"]["rpm_limit"]
    assert (rpm["limit"], rpm["used"], rpm["remaining"]) == (30, 3, 27)
    assert rpm["resets_at"] > time.time()
    daily = one["limits"]["daily_request_limit"]
    assert (daily["used"], daily["remaining"]) == (3, 997) and daily["resets_at"] > time.time()
    assert one["limits"]["max_concurrent"]["used"] == 0
    assert org["org"]["id"] in {q["org_id"] for q in everyone["data"]}


def test_a_burst_at_the_window_edge_admits_no_more_than_the_limit(lim):
    """Sliding 60 s window: no minute boundary where the limit could be taken twice."""
    org = lim.open_org(rpm_limit=10)
    started = time.monotonic()
    first = asyncio.run(_burst(lim, org["api_key"], 5))
    time.sleep(55 - (time.monotonic() - started))
    second = asyncio.run(_burst(lim, org["api_key"], 10))
    time.sleep(max(0.0, 60.7 - (time.monotonic() - started)))  # the first burst just left
    third = asyncio.run(_burst(lim, org["api_key"], 10))
    ok = [sum(r.status_code == 200 for r in batch) for batch in (first, second, third)]
    assert ok == [5, 5, 5], ok  # never more than 10 in any 60 s


def test_a_key_narrows_its_organisations_limits(lim):
    org = lim.open_org(rpm_limit=100)
    with lim.admin() as admin:
        narrow = admin.post(f"/admin/orgs/{org['org']['id']}/keys", json={"limits": {"rpm_limit": 3}}).json()
    narrow_results = asyncio.run(_burst(lim, narrow["api_key"], 5))
    assert Counter(r.status_code for r in narrow_results) == {200: 3, 429: 2}
    # The organisation's other key is not held back by the narrow one's limit...
    assert Counter(r.status_code for r in asyncio.run(_burst(lim, org["api_key"], 5))) == {200: 5}
    # ...and the narrow key's requests counted against the organisation too: 3 + 5 of 100.
    with lim.admin() as admin:
        assert admin.get(f"/admin/quota/{org['org']['id']}").json()["limits"]["rpm_limit"]["used"] == 8


def test_models_answer_carries_the_ratelimit_headers_too(lim):
    org = lim.open_org(rpm_limit=50, tpm_limit=100_000)
    auth = {"Authorization": f"Bearer {org['api_key']}"}
    httpx.post(lim.base_url + "/v1/chat/completions", headers=auth,
               json={"model": "qwen", "messages": MSG, "max_tokens": 2}).raise_for_status()
    time.sleep(0.3)
    h = httpx.get(lim.base_url + "/v1/models", headers=auth).headers
    assert (h["x-ratelimit-limit-requests"], h["x-ratelimit-remaining-requests"]) == ("50", "49")
    assert h["x-ratelimit-limit-tokens"] == "100000" and int(h["x-ratelimit-remaining-tokens"]) < 100_000
    assert h["x-ratelimit-reset-requests"].endswith("s")


def _sim_stats(stack) -> list[dict]:
    return [httpx.get(stack.backend_url(name) + "/sim/stats").json() for name in ("chat0", "chat1")]


def test_refused_requests_never_reach_a_backend_when_the_limit_is_near(lim):
    org = lim.open_org(rpm_limit=5)
    before = sum(s["by_endpoint"].get("/v1/chat/completions", 0) for s in _sim_stats(lim))
    with httpx.Client(base_url=lim.base_url, timeout=30,
                      headers={"Authorization": f"Bearer {org['api_key']}"}) as client:
        statuses = [client.post("/v1/chat/completions", json={"model": "qwen", "messages": MSG,
                                                              "max_tokens": 1}).status_code
                    for _ in range(10)]
    assert statuses == [200] * 5 + [429] * 5
    assert sum(s["by_endpoint"].get("/v1/chat/completions", 0) for s in _sim_stats(lim)) - before == 5


def test_a_call_started_beside_its_admission_is_cut_short_when_refused(lim):
    """With room to spare, the backend call starts while admission is on its way. Traffic the
    worker could not see (another replica's, put straight into Redis here) uses the room up:
    the verdict refuses, the client gets the 429 at once, and the backend's call is aborted."""
    org = lim.open_org(rpm_limit=1000)
    auth = {"Authorization": f"Bearer {org['api_key']}"}
    body = {"model": "qwen", "messages": MSG, "max_tokens": 1}
    with httpx.Client(base_url=lim.base_url, timeout=30, headers=auth) as client:  # one worker
        assert client.post("/v1/chat/completions", json=body).status_code == 200
        r = _redis(lim)
        now_ms = int(r.time()[0]) * 1000
        r.zadd(f"llmgw:rl:{{{org['org']['id']}}}:rpm", {f"elsewhere-{i}": now_ms for i in range(1000)})
        lim.chat_faults(ttft_ms=5000)
        try:
            aborted = sum(s["aborted"] for s in _sim_stats(lim))
            started = time.monotonic()
            refused = client.post("/v1/chat/completions", json=body)
            took = time.monotonic() - started
            deadline = time.monotonic() + 5
            while sum(s["aborted"] for s in _sim_stats(lim)) == aborted and time.monotonic() < deadline:
                time.sleep(0.05)
            now_aborted = sum(s["aborted"] for s in _sim_stats(lim))
        finally:
            lim.chat_faults()
    assert refused.status_code == 429 and refused.json()["error"]["code"] == "limit_rpm"
    assert took < 2.5, took  # not after the backend's 5 s first token
    assert now_aborted == aborted + 1  # the backend saw the call, and saw it go
