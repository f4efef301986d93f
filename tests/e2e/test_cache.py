"""The response cache and gzip through real gunicorn gateways in front of simulators:
per-organisation isolation, TTL, no-store / no-cache, collapse of identical misses, stream
replay and fill, hits billed as requests and holding no lease, the Redis tier shared
by replicas, gzip on large JSON and never on SSE."""

from __future__ import annotations

import asyncio
import gzip
import time
import uuid

import httpx
import orjson
import pytest

from stacks import TestStack

TTL = 6
CHAT_PATH = "/v1/chat/completions"
# Loose limits, so only the limit a test is about can refuse.
OPEN = {"rps": 1000, "burst": 1000, "rpm_limit": 100_000, "tpm_limit": 10**9, "max_concurrent": 64}


@pytest.fixture(scope="module")
def cache_stack(tmp_path_factory):
    # One worker: collapsing is per worker, and the tests count the backend calls it saves.
    stack = TestStack("sim", tmp_path_factory.mktemp("cache"), workers=1,
                      sim_args=("--ttft-ms", "0", "--itl-ms", "0"),
                      env={"CACHE_TTL_SECS": str(TTL), "GZIP_MIN_BYTES": "1024"}).start()
    yield stack
    stack.stop()


@pytest.fixture(scope="module")
def shared_stack(tmp_path_factory):
    stack = TestStack("sim", tmp_path_factory.mktemp("cache-shared"), workers=2, replicas=2,
                      sim_args=("--ttft-ms", "0", "--itl-ms", "0"),
                      env={"CACHE_REDIS": "on"}).start()
    yield stack
    stack.stop()


def _key(stack, **limits) -> dict[str, str]:
    return {"Authorization": "Bearer " + stack.create_org(**{**OPEN, **limits})["api_key"]}


def _body(**extra) -> dict:
    """A deterministic chat request with a prompt no other test sends."""
    return {"model": "qwen", "messages": [{"role": "user", "content": f"q {uuid.uuid4().hex}"}],
            "temperature": 0, "max_tokens": 6, **extra}


def _calls(stack, path: str = CHAT_PATH, backends=("chat0", "chat1")) -> int:
    """Inference calls the backends have received (health probes excluded)."""
    return sum(httpx.get(stack.backend_url(b) + "/sim/stats").json()["by_endpoint"].get(path, 0)
               for b in backends)


def _post(stack, auth, body, path=CHAT_PATH, base=None, **headers) -> httpx.Response:
    resp = httpx.post((base or stack.base_url) + path, json=body, timeout=30,
                      headers={**auth, **headers})
    assert resp.status_code == 200, resp.text
    return resp


def _until(predicate, timeout: float = 15.0, every: float = 0.1):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(every)


def _faults(stack, **values) -> None:
    for name in ("chat0", "chat1"):
        httpx.post(stack.backend_url(name) + "/sim/faults",
                   json={"reset": True, **values}).raise_for_status()


def _sse(raw: bytes) -> list:
    assert raw.endswith(b"\n\n"), raw[-40:]
    return [e[6:] if e == b"data: [DONE]" else orjson.loads(e[6:]) for e in raw[:-2].split(b"\n\n")]


def test_second_identical_request_is_a_hit_without_a_backend_call(cache_stack):
    auth, body = _key(cache_stack), _body()
    before = _calls(cache_stack)
    first = _post(cache_stack, auth, body)
    second = _post(cache_stack, auth, {**body, "user": "someone", "model": "Qwen/Qwen2.5-7B-Instruct"})
    assert (first.headers["x-cache"], second.headers["x-cache"]) == ("MISS", "HIT")
    assert second.json() == first.json() and second.json()["model"] == "Qwen/Qwen2.5-7B-Instruct"
    assert "x-ratelimit-limit-requests" in second.headers
    assert _calls(cache_stack) == before + 1


def test_embeddings_are_always_cached_and_sampling_never(cache_stack):
    auth = _key(cache_stack)
    emb = {"model": "snowflake-arctic-embed", "input": uuid.uuid4().hex}
    hits = [_post(cache_stack, auth, emb, "/v1/embeddings").headers["x-cache"] for _ in range(2)]
    assert hits == ["MISS", "HIT"]
    sampled = _body(temperature=0.8)
    before = _calls(cache_stack)
    answers = [_post(cache_stack, auth, sampled) for _ in range(2)]
    assert all("x-cache" not in r.headers for r in answers)
    assert _calls(cache_stack) == before + 2


def test_organisations_never_share_entries(cache_stack):
    body = _body()
    before = _calls(cache_stack)
    one, two = _key(cache_stack), _key(cache_stack)
    assert _post(cache_stack, one, body).headers["x-cache"] == "MISS"
    assert _post(cache_stack, two, body).headers["x-cache"] == "MISS"
    assert _post(cache_stack, two, body).headers["x-cache"] == "HIT"
    assert _calls(cache_stack) == before + 2


def test_entries_expire_after_the_ttl(cache_stack):
    auth, body = _key(cache_stack), _body()
    filled = time.monotonic()
    _post(cache_stack, auth, body)
    assert _post(cache_stack, auth, body, **{"Cache-Control": "no-store"}).headers["x-cache"] == "HIT"
    # Probe without storing, so a probe's own miss does not fill the cache again.
    expired = _until(lambda: _post(cache_stack, auth, body, **{"Cache-Control": "no-store"})
                     .headers["x-cache"] == "MISS", timeout=TTL + 20, every=0.5)
    assert expired and time.monotonic() - filled >= TTL


def test_no_store_keeps_nothing_and_no_cache_reads_nothing(cache_stack):
    auth, body = _key(cache_stack), _body()
    before = _calls(cache_stack)
    assert _post(cache_stack, auth, body, **{"Cache-Control": "no-store"}).headers["x-cache"] == "MISS"
    assert _post(cache_stack, auth, body).headers["x-cache"] == "MISS"      # nothing was kept
    assert _post(cache_stack, auth, body).headers["x-cache"] == "HIT"
    assert _post(cache_stack, auth, body, **{"Cache-Control": "no-cache"}).headers["x-cache"] == "MISS"
    assert _calls(cache_stack) == before + 3


def test_identical_concurrent_misses_make_one_backend_call(cache_stack):
    auth, body = _key(cache_stack), _body()
    _faults(cache_stack, ttft_ms=1500)  # the leader's call is still running when the others arrive
    try:
        before = _calls(cache_stack)

        async def burst():
            async with httpx.AsyncClient(timeout=60, headers=auth) as client:
                return await asyncio.gather(*[client.post(cache_stack.base_url + CHAT_PATH, json=body)
                                              for _ in range(8)])
        answers = asyncio.run(burst())
    finally:
        _faults(cache_stack)
    assert [r.status_code for r in answers] == [200] * 8
    assert sorted(r.headers["x-cache"] for r in answers) == ["HIT"] * 7 + ["MISS"]
    assert len({r.content for r in answers}) == 1
    assert _calls(cache_stack) == before + 1


def _stream(stack, auth, body, **headers) -> httpx.Response:
    resp = httpx.post(stack.base_url + CHAT_PATH, json={**body, "stream": True}, timeout=30,
                      headers={**auth, **headers})
    assert resp.status_code == 200 and resp.headers["content-type"].startswith("text/event-stream")
    return resp


def test_a_hit_replays_as_sse_with_usage_only_when_asked(cache_stack):
    auth, body = _key(cache_stack), _body()
    answer = _post(cache_stack, auth, body).json()
    before = _calls(cache_stack)
    plain = _stream(cache_stack, auth, body)
    assert plain.headers["x-cache"] == "HIT" and "content-encoding" not in plain.headers
    events = _sse(plain.content)
    assert events[-1] == b"[DONE]" and plain.content.endswith(b"\n\ndata: [DONE]\n\n")
    chunks = events[:-1]
    assert {c["object"] for c in chunks} == {"chat.completion.chunk"}
    assert {c["id"] for c in chunks} == {answer["id"]}
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks)
    assert text == answer["choices"][0]["message"]["content"]
    assert chunks[-1]["choices"][0]["finish_reason"] == answer["choices"][0]["finish_reason"]
    assert all("usage" not in c for c in chunks)
    with_usage = _sse(_stream(cache_stack, auth, {**body, "stream_options": {"include_usage": True}}).content)
    head = {k: v for k, v in with_usage[0].items() if k != "choices"}
    assert with_usage[-2] == {**head, "choices": [], "usage": answer["usage"]}
    assert all("usage" not in c for c in with_usage[:-2])
    assert _calls(cache_stack) == before


def test_a_streamed_miss_fills_the_cache_when_it_completes(cache_stack):
    auth, body = _key(cache_stack), _body()
    streamed = _stream(cache_stack, auth, body)
    assert streamed.headers["x-cache"] == "MISS"
    chunks = [c for c in _sse(streamed.content) if isinstance(c, dict) and c["choices"]]
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks)
    # The fill happens as the stream closes, just after the client saw [DONE]: probe with
    # no-store so a probe's own miss cannot fill the entry instead.
    hit = _until(lambda: (r := _post(cache_stack, auth, body, **{"Cache-Control": "no-store"}))
                 .headers["x-cache"] == "HIT" and r)
    assert hit, "the streamed answer was never cached"
    assert hit.json()["choices"][0]["message"]["content"] == text
    assert hit.json()["object"] == "chat.completion" and hit.json()["usage"]["completion_tokens"] > 0


def _usage(stack, org_id: str) -> dict:
    with stack.admin() as admin:
        rows = admin.get("/admin/usage", params={"window": "1h", "limit": 500}).json()["orgs"]
    return next(r for r in rows if r["org_id"] == org_id)


def test_hits_count_as_requests_bill_no_tokens_and_hold_no_lease(cache_stack):
    org = cache_stack.create_org(**{**OPEN, "max_concurrent": 1})
    auth, body = {"Authorization": f"Bearer {org['api_key']}"}, _body()
    first = _post(cache_stack, auth, body).json()
    for _ in range(5):
        # With max_concurrent 1, a lease left behind would refuse every later request for 30 s.
        resp = _until(lambda: (r := httpx.post(cache_stack.base_url + CHAT_PATH, json=body,
                                               headers=auth, timeout=30)).status_code == 200 and r,
                      timeout=10)
        assert resp and resp.headers["x-cache"] == "HIT", resp and resp.text
    tokens = first["usage"]["prompt_tokens"] + first["usage"]["completion_tokens"]
    usage = _until(lambda: (u := _usage(cache_stack, org["org"]["id"]))["requests"] == 6 and u)
    assert usage, _usage(cache_stack, org["org"]["id"])
    assert usage["prompt_tokens"] + usage["completion_tokens"] == tokens
    assert usage["by_endpoint"]["chat"]["cache_hits"] == 5 and usage["success"] == 6
    with cache_stack.admin() as admin:
        quota = admin.get(f"/admin/quota/{org['org']['id']}").json()["limits"]
    assert quota["max_concurrent"]["used"] == 0


def test_hits_count_against_the_request_limit(cache_stack):
    org = cache_stack.create_org(**{**OPEN, "rpm_limit": 3})
    auth, body = {"Authorization": f"Bearer {org['api_key']}"}, _body()
    answers = [httpx.post(cache_stack.base_url + CHAT_PATH, json=body, headers=auth, timeout=30)
               for _ in range(4)]
    assert [(r.status_code, r.headers.get("x-cache")) for r in answers] == [
        (200, "MISS"), (200, "HIT"), (200, "HIT"), (429, None)]
    assert answers[3].json()["error"]["code"] == "limit_rpm"
    assert answers[2].headers["x-ratelimit-remaining-requests"] == "0"

    def access_line(request_id: str) -> dict | None:
        for line in (cache_stack.logs / "gateway.log").read_text().splitlines():
            if line.startswith("{") and request_id in line:
                entry = orjson.loads(line)
                if entry.get("event") == "request":
                    return entry
        return None
    refused = _until(lambda: access_line(answers[3].headers["x-request-id"]))
    hit = _until(lambda: access_line(answers[2].headers["x-request-id"]))
    assert (refused["status"], refused["cache"]) == (429, None)  # refused: neither hit nor miss
    assert (hit["status"], hit["cache"]) == (200, "HIT")


def test_cache_metrics_and_access_log(cache_stack):
    auth, body = _key(cache_stack), _body()
    for _ in range(2):
        _post(cache_stack, auth, body)
    with cache_stack.admin() as admin:
        metrics = admin.get("/metrics").text
    hits = [line for line in metrics.splitlines()
            if line.startswith('llmgw_cache_requests_total{') and 'result="hit"' in line and 'route="chat"' in line]
    assert hits and float(hits[0].rsplit(" ", 1)[1]) >= 1

    def logged():
        lines = [orjson.loads(x) for x in (cache_stack.logs / "gateway.log").read_text().splitlines()
                 if x.startswith("{")]
        return {line.get("cache") for line in lines if line.get("route") == "chat"} >= {"HIT", "MISS"}
    assert _until(logged)


def test_gzip_for_large_json_only_when_accepted(cache_stack):
    auth = _key(cache_stack)
    emb = {"model": "snowflake-arctic-embed", "input": [uuid.uuid4().hex for _ in range(4)]}
    url = cache_stack.base_url + "/v1/embeddings"
    with httpx.Client(timeout=30) as client:
        packed = client.post(url, json=emb, headers={**auth, "Accept-Encoding": "gzip"})
        plain = client.post(url, json=emb, headers={**auth, "Accept-Encoding": "identity"})
        small = client.post(cache_stack.base_url + CHAT_PATH, json=_body(max_tokens=1),
                            headers={**auth, "Accept-Encoding": "gzip"})
    assert len(plain.content) > 1024 and "content-encoding" not in plain.headers
    # (answers this large exceed CACHE_MAX_ENTRY_BYTES: both came from the backend)
    assert packed.headers["content-encoding"] == "gzip"
    assert packed.json()["data"] == plain.json()["data"]
    assert int(packed.headers["content-length"]) < len(plain.content)
    assert len(small.content) < 1024 and "content-encoding" not in small.headers
    with httpx.stream("POST", url, json=emb, headers={**auth, "Accept-Encoding": "gzip"}) as raw:
        wire = b"".join(raw.iter_raw())  # the bytes as sent, not decoded by httpx
    assert orjson.loads(gzip.decompress(wire))["data"] == plain.json()["data"]


def test_event_streams_are_never_gzipped_nor_buffered(cache_stack):
    auth = _key(cache_stack)
    _faults(cache_stack, itl_ms=60)
    try:
        arrivals, start = [], time.monotonic()
        body = _body(temperature=0.8, max_tokens=10, stream=True)  # not cacheable: a live stream
        with httpx.stream("POST", cache_stack.base_url + CHAT_PATH, json=body, timeout=30,
                          headers={**auth, "Accept-Encoding": "gzip"}) as resp:
            assert "content-encoding" not in resp.headers
            for line in resp.iter_lines():
                if line.startswith("data: "):
                    arrivals.append(time.monotonic() - start)
    finally:
        _faults(cache_stack)
    # 10 tokens 60 ms apart: a buffering middleware would deliver every event at the end.
    assert len(arrivals) >= 11 and arrivals[-1] - arrivals[1] >= 0.3
    replay_body = _body(max_tokens=400, ignore_eos=True)  # a long answer: well above GZIP_MIN_BYTES
    _post(cache_stack, auth, replay_body)
    replay = _stream(cache_stack, auth, replay_body, **{"Accept-Encoding": "gzip"})
    assert replay.headers["x-cache"] == "HIT" and len(replay.content) > 1024
    assert "content-encoding" not in replay.headers


def test_the_redis_tier_is_shared_by_replicas_and_workers(shared_stack):
    auth, body = _key(shared_stack), _body()
    first_url, other_url = shared_stack.base_urls
    filled = _post(shared_stack, auth, body, base=first_url)
    assert filled.headers["x-cache"] == "MISS"
    # The other replica has never seen the request: its answer comes from Redis (written in
    # the background just after the first answer went out, hence the polling).
    hit = _until(lambda: (r := _post(shared_stack, auth, body, base=other_url,
                                     **{"Cache-Control": "no-store"})).headers["x-cache"] == "HIT" and r)
    assert hit and hit.json() == filled.json()
    before = _calls(shared_stack)
    for _ in range(4):  # every worker of both replicas answers from cache now
        for url in (first_url, other_url):
            assert _post(shared_stack, auth, body, base=url).headers["x-cache"] == "HIT"
    assert _calls(shared_stack) == before
