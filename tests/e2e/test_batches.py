"""The Batch API through real processes (simulators, gunicorn, Redis, the batch runner): the
openai SDK's whole round trip, validation errors naming their lines, organisations apart,
cancel, and seed 001/004's batch completions polled through their status_url."""

from __future__ import annotations

import io
import subprocess
import time

import httpx
import openai
import orjson
import pytest

from stacks import E2E_ROUTING, TestStack

BATCH = ["batch"]


def lines(n: int, *, model: str = "qwen", url: str = "/v1/chat/completions", prefix: str = "r",
          **extra) -> bytes:
    return b"".join(orjson.dumps({
        "custom_id": f"{prefix}{i}", "method": "POST", "url": url,
        "body": {"model": model, "messages": [{"role": "user", "content": f"hi {i}"}],
                 "max_tokens": 4, **extra}}) + b"\n" for i in range(n))


SEED_MODEL = "mistralai/Mistral-7B-Instruct-v0.1"  # the name seeds 001 and 004 use


@pytest.fixture(scope="module")
def bstack(tmp_path_factory):
    state = tmp_path_factory.mktemp("batches")
    routing = state / "routing.yaml"  # the seeds' model name as an alias of the chat model
    routing.write_text(E2E_ROUTING.read_text().replace(
        "aliases: [qwen]", f"aliases: [qwen, {SEED_MODEL}]"))
    stack = TestStack("sim", state, workers=2, runners=1, routing=routing,
                      sim_args=("--ttft-ms", "5", "--itl-ms", "1")).start()
    yield stack
    stack.stop()


def _client(stack: TestStack, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=stack.base_url + "/v1", api_key=key, max_retries=0)


def _org(stack: TestStack, scopes=BATCH, **limits) -> dict:
    return stack.open_org(key={"name": "k", "scopes": scopes}, **limits)


def wait_for(client: openai.OpenAI, batch_id: str, statuses, timeout: float = 60):
    deadline = time.monotonic() + timeout
    while True:
        batch = client.batches.retrieve(batch_id)
        if batch.status in statuses:
            return batch
        assert time.monotonic() < deadline, f"batch stuck in {batch.status}: {batch}"
        time.sleep(0.2)


def output_lines(client: openai.OpenAI, file_id: str | None) -> list[dict]:
    if file_id is None:
        return []
    return [orjson.loads(x) for x in client.files.content(file_id).content.splitlines()]


def test_sdk_uploads_creates_polls_and_reads_the_output(bstack):
    client = _client(bstack, _org(bstack)["api_key"])
    up = client.files.create(file=("in.jsonl", io.BytesIO(lines(40))), purpose="batch")
    batch = client.batches.create(input_file_id=up.id, endpoint="/v1/chat/completions",
                                  completion_window="24h", metadata={"run": "one"})
    assert batch.status == "validating" and batch.input_file_id == up.id
    assert batch.metadata == {"run": "one"} and batch.expires_at == batch.created_at + 86400
    done = wait_for(client, batch.id, {"completed", "failed"})
    assert done.status == "completed", done
    assert done.request_counts.total == 40 and done.request_counts.completed == 40
    assert done.request_counts.failed == 0 and done.error_file_id is None
    assert done.model == "Qwen/Qwen2.5-7B-Instruct"
    assert done.in_progress_at and done.finalizing_at and done.completed_at
    out = output_lines(client, done.output_file_id)
    assert sorted(x["custom_id"] for x in out) == sorted(f"r{i}" for i in range(40))
    assert all(x["response"]["status_code"] == 200 and x["error"] is None for x in out)
    assert all(x["id"].startswith("batch_req_") and x["response"]["request_id"] for x in out)
    assert all(x["response"]["body"]["object"] == "chat.completion" for x in out)
    used = sum(x["response"]["body"]["usage"]["total_tokens"] for x in out)
    assert done.usage.total_tokens == used > 0
    assert client.files.retrieve(done.output_file_id).purpose == "batch_output"
    assert [b.id for b in client.batches.list().data][0] == batch.id
    with pytest.raises(openai.ConflictError):  # a completed batch cannot be cancelled
        client.batches.cancel(batch.id)


def _failed_with(client: openai.OpenAI, content: bytes, endpoint="/v1/chat/completions"):
    up = client.files.create(file=("bad.jsonl", io.BytesIO(content)), purpose="batch")
    batch = client.batches.create(input_file_id=up.id, endpoint=endpoint,
                                  completion_window="24h")
    done = wait_for(client, batch.id, {"failed", "completed", "in_progress"})
    assert done.status == "failed", done
    assert done.failed_at and done.output_file_id is None and done.error_file_id is None
    return [(e.code, e.line) for e in done.errors.data], done


BAD_INPUTS = {
    "not_json": (lines(2) + b"{not json\n" + lines(1, prefix="x"),
                 [("invalid_json_line", 3)]),
    "duplicate_custom_id": (lines(3) + lines(1), [("duplicate_custom_id", 4)]),
    "other_url": (lines(2) + orjson.dumps({
        "custom_id": "x", "method": "POST", "url": "/v1/embeddings",
        "body": {"model": "qwen", "input": "a"}}) + b"\n", [("invalid_url", 3)]),
    "unknown_model": (lines(1) + lines(2, model="no-such-model", prefix="m"),
                      [("model_not_found", 2), ("model_not_found", 3)]),
    "refused_body": (lines(1) + orjson.dumps({
        "custom_id": "neg", "method": "POST", "url": "/v1/chat/completions",
        "body": {"model": "qwen", "messages": [{"role": "user", "content": "x"}],
                 "max_tokens": -1}}) + b"\n", [("invalid_request", 2)]),
    "streaming": (lines(1, stream=True), [("invalid_request", 1)]),
    "two_models": (lines(1) + lines(1, model="text2sql", prefix="s"),
                   [("mismatched_model", 2)]),
    "missing_field": (b'{"custom_id": "a", "url": "/v1/chat/completions", "body": {}}\n',
                      [("invalid_request", 1)]),
    "empty": (b"\n\n", [("empty_file", None)]),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_a_bad_input_file_fails_validation_naming_its_lines(bstack, case):
    content, expected = BAD_INPUTS[case]
    client = _client(bstack, _org(bstack)["api_key"])
    errors, done = _failed_with(client, content)
    assert errors == expected
    assert done.request_counts.total == 0
    # nothing half-written: no job folder, no output file
    folder = bstack.cfg.state_dir / "data" / "batches"
    assert not any(p.name == done.id for p in folder.rglob("batch_*"))
    assert [f.purpose for f in client.files.list().data] == ["batch"]


def test_more_than_50000_lines_fail_validation(bstack):
    client = _client(bstack, _org(bstack)["api_key"])
    one = b'{"custom_id":"%d","method":"POST","url":"/v1/embeddings","body":{"model":"snowflake-arctic-embed","input":"a"}}\n'
    content = b"".join(one % i for i in range(50_001))
    errors, _ = _failed_with(client, content, endpoint="/v1/embeddings")
    assert errors == [("too_many_requests", 50_001)]


def test_create_refuses_what_is_not_this_orgs_batch_file(bstack):
    mine = _client(bstack, _org(bstack)["api_key"])
    other = _client(bstack, _org(bstack)["api_key"])
    theirs = other.files.create(file=("a.jsonl", io.BytesIO(lines(1))), purpose="batch")
    with pytest.raises(openai.NotFoundError) as exc:
        mine.batches.create(input_file_id=theirs.id, endpoint="/v1/chat/completions",
                            completion_window="24h")
    assert exc.value.body["param"] == "input_file_id"
    up = mine.files.create(file=("in.jsonl", io.BytesIO(lines(2))), purpose="batch")
    batch = mine.batches.create(input_file_id=up.id, endpoint="/v1/chat/completions",
                                completion_window="24h")
    done = wait_for(mine, batch.id, {"completed"})
    # a batch's output is not batch input
    with pytest.raises(openai.BadRequestError) as exc:
        mine.batches.create(input_file_id=done.output_file_id,
                            endpoint="/v1/chat/completions", completion_window="24h")
    assert "purpose" in exc.value.message
    # another organisation sees none of it
    for call in (lambda: other.batches.retrieve(batch.id), lambda: other.batches.cancel(batch.id)):
        with pytest.raises(openai.NotFoundError):
            call()
    assert batch.id not in [b.id for b in other.batches.list().data]
    with pytest.raises(openai.NotFoundError):
        other.files.content(done.output_file_id)


@pytest.mark.parametrize("body, param", [
    ({"endpoint": "/v1/chat/completions", "completion_window": "24h"}, "input_file_id"),
    ({"input_file_id": "file-x", "endpoint": "/v1/images", "completion_window": "24h"}, "endpoint"),
    ({"input_file_id": "file-x", "endpoint": "/v1/chat/completions", "completion_window": "1h"},
     "completion_window"),
    ({"input_file_id": "file-x", "endpoint": "/v1/chat/completions", "completion_window": "24h",
      "metadata": {f"k{i}": "v" for i in range(17)}}, "metadata"),
])
def test_a_bad_create_request_is_a_400_naming_its_param(bstack, body, param):
    key = _org(bstack)["api_key"]
    resp = httpx.post(bstack.base_url + "/v1/batches", json=body,
                      headers={"Authorization": f"Bearer {key}"})
    assert resp.status_code == 400, resp.text
    assert resp.json()["error"]["param"] == param


def test_batch_routes_need_the_batch_scope(bstack):
    key = _org(bstack, scopes=["chat"])["api_key"]
    resp = httpx.get(bstack.base_url + "/v1/batches", headers={"Authorization": f"Bearer {key}"})
    assert resp.status_code == 403 and "batch" in resp.json()["error"]["message"]


def test_cancel_stops_new_work_and_keeps_what_ran(bstack):
    client = _client(bstack, _org(bstack)["api_key"])
    up = client.files.create(file=("in.jsonl", io.BytesIO(lines(600, max_tokens=48))),
                             purpose="batch")
    batch = client.batches.create(input_file_id=up.id, endpoint="/v1/chat/completions",
                                  completion_window="24h")
    deadline = time.monotonic() + 30
    while client.batches.retrieve(batch.id).request_counts.completed < 20:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    cancelling = client.batches.cancel(batch.id)
    assert cancelling.status in ("cancelling", "cancelled") and cancelling.cancelling_at
    done = wait_for(client, batch.id, {"cancelled"})
    ran = output_lines(client, done.output_file_id)
    rest = output_lines(client, done.error_file_id)
    assert 20 <= len(ran) < 600 and done.request_counts.completed == len(ran)
    ids = [x["custom_id"] for x in ran + rest]
    assert sorted(ids) == sorted(f"r{i}" for i in range(600))  # each line exactly once
    assert {x["error"]["code"] for x in rest} == {"batch_cancelled"}
    assert client.batches.cancel(batch.id).status == "cancelled"  # again: nothing changes


def _curl(*args: str) -> dict:
    out = subprocess.run(["curl", "-sS", "--fail-with-body", *args], capture_output=True,
                         timeout=30, check=True).stdout
    return orjson.loads(out)


def test_the_seeds_batch_completion_curl_and_its_status_url(bstack):
    token = _org(bstack)["api_key"]  # a key with the batch scope alone, as the seeds' token
    accepted = _curl("-X", "POST", "-H", f"Authorization: Bearer {token}",
                     "-H", "Content-Type: application/json",
                     f"{bstack.base_url}/v1/batch/completions",
                     "-d", '{"model":"%s","prompt":"Write a haiku about snow.",'
                           '"max_tokens":32,"priority":1}' % SEED_MODEL)
    assert accepted["status"] in ("queued", "running") and accepted["priority"] == 1
    assert accepted["status_url"] == f"{bstack.base_url}/v1/batch/completions/{accepted['id']}"
    deadline = time.monotonic() + 30
    while (status := _curl("-H", f"Authorization: Bearer {token}", accepted["status_url"]))[
            "status"] != "completed":
        assert status["status"] in ("queued", "running"), status
        assert time.monotonic() < deadline
        time.sleep(0.1)
    result = status["result"]
    assert result["object"] == "text_completion"  # named as realtime answers are: the model's name
    assert result["model"] == "Qwen/Qwen2.5-7B-Instruct"
    assert result["choices"][0]["text"] and result["usage"]["completion_tokens"] > 0
    assert status["completed_at"] >= status["created_at"]
    other = _org(bstack)["api_key"]
    resp = httpx.get(accepted["status_url"], headers={"Authorization": f"Bearer {other}"})
    assert resp.status_code == 404  # another organisation's


@pytest.mark.parametrize("body, param", [
    ({"model": "qwen", "prompt": "x", "priority": "high"}, "priority"),
    ({"model": "qwen", "prompt": "x", "stream": True}, "stream"),
    ({"model": "nope", "prompt": "x"}, "model"),
    ({"model": "qwen"}, "prompt"),
])
def test_a_bad_batch_completion_is_refused_up_front(bstack, body, param):
    resp = httpx.post(bstack.base_url + "/v1/batch/completions", json=body,
                      headers={"Authorization": f"Bearer {_org(bstack)['api_key']}"})
    assert resp.status_code in (400, 404) and resp.json()["error"]["param"] == param, resp.text


@pytest.mark.vllm
def test_sdk_batch_against_real_vllm(vllm_stack):
    """The same round trip with real vLLM on CPU behind the gateway: a small chat batch and a
    small embeddings batch. The chat servers run --scheduling-policy priority (the pool says
    `scheduling: priority`): they take the batch lines' priority and a realtime one's."""
    if not vllm_stack.runners:
        vllm_stack.start_runner()
    client = _client(vllm_stack, _org(vllm_stack, scopes=["batch", "chat"])["api_key"])
    answer = client.chat.completions.create(
        model="qwen", messages=[{"role": "user", "content": "hi"}], max_tokens=2,
        extra_body={"priority": 7})
    assert answer.choices[0].message.content is not None
    embed = b"".join(orjson.dumps({"custom_id": f"e{i}", "method": "POST", "url": "/v1/embeddings",
                                   "body": {"model": "snowflake-arctic-embed", "input": f"text {i}"}})
                     + b"\n" for i in range(3))
    made = []
    for content, endpoint in ((lines(3), "/v1/chat/completions"), (embed, "/v1/embeddings")):
        up = client.files.create(file=("in.jsonl", io.BytesIO(content)), purpose="batch")
        made.append(client.batches.create(input_file_id=up.id, endpoint=endpoint,
                                          completion_window="24h"))
    for batch, kind in zip(made, ("chat.completion", "list")):
        done = wait_for(client, batch.id, {"completed", "failed"}, timeout=300)
        assert done.status == "completed" and done.request_counts.completed == 3, done
        out = output_lines(client, done.output_file_id)
        assert len(out) == 3 and all(x["response"]["body"]["object"] == kind for x in out)
        assert done.usage.input_tokens > 0


def test_two_runners_share_a_batch_and_each_line_appears_once(bstack):
    second = bstack.start_runner()
    try:
        client = _client(bstack, _org(bstack)["api_key"])
        up = client.files.create(file=("in.jsonl", io.BytesIO(lines(400, max_tokens=8))),
                                 purpose="batch")
        batch = client.batches.create(input_file_id=up.id, endpoint="/v1/chat/completions",
                                      completion_window="24h")
        done = wait_for(client, batch.id, {"completed"})
        out = output_lines(client, done.output_file_id)
        assert sorted(x["custom_id"] for x in out) == sorted(f"r{i}" for i in range(400))
        # A runner's figures are its last heartbeat's (every 2 s).
        deadline = time.monotonic() + 6
        with bstack.admin() as admin:
            while True:
                runners = admin.get("/admin/batches").json()["runners"]
                if all(r["lines_done"] > 0 for r in runners) or time.monotonic() > deadline:
                    break
                time.sleep(0.5)
        assert len(runners) == 2 and all(r["lines_done"] > 0 for r in runners), runners
    finally:
        from stack.processes import stop
        stop([second.popen.pid], grace=10)
        bstack.runners.remove(second)


def test_batch_lines_wait_behind_realtime_on_servers_scheduling_by_priority(bstack):
    """On the chat pool (`scheduling: priority`, its simulators started so) every batch line
    carries vLLM's `priority` BATCH_BACKEND_PRIORITY and realtime requests 0 or what they ask
    up to just below; asking for less than 0 (ahead of everyone) is refused."""
    from llmgw.batches.lane import BATCH_BACKEND_PRIORITY
    sims = [httpx.Client(base_url=bstack.backend_url(n)) for n in ("chat0", "chat1")]
    for sim in sims:
        sim.post("/sim/stats", json={"reset": True})  # counts from here
    org = _org(bstack, scopes=["batch", "chat", "embeddings"])
    client = _client(bstack, org["api_key"])
    up = client.files.create(file=("in.jsonl", io.BytesIO(lines(5))), purpose="batch")
    batch = client.batches.create(input_file_id=up.id, endpoint="/v1/chat/completions",
                                  completion_window="24h")
    assert wait_for(client, batch.id, {"completed"}).request_counts.completed == 5
    chat = {"model": "qwen", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}
    client.chat.completions.create(**chat)
    client.chat.completions.create(**chat, extra_body={"priority": 7})
    seen: dict[str, int] = {}
    for sim in sims:
        for value, n in sim.get("/sim/stats").json()["priorities"].items():
            seen[value] = seen.get(value, 0) + n
    assert seen == {"0": 1, "7": 1, str(BATCH_BACKEND_PRIORITY): 5}, seen
    for bad in (-1, BATCH_BACKEND_PRIORITY, "1", True):
        with pytest.raises(openai.BadRequestError) as refused:
            client.chat.completions.create(**chat, extra_body={"priority": bad})
        assert refused.value.body["param"] == "priority"


def test_operators_see_and_cancel_batches(bstack):
    """gatewayctl batch list|show|cancel, /health/detailed's runners, and the batch metrics."""
    from test_gatewayctl import ctl
    org = _org(bstack)
    client = _client(bstack, org["api_key"])
    org_id = org["org"]["id"]
    up = client.files.create(file=("in.jsonl", io.BytesIO(lines(5))), purpose="batch")
    done = wait_for(client, client.batches.create(
        input_file_id=up.id, endpoint="/v1/chat/completions", completion_window="24h").id,
        {"completed"})
    listed = ctl(bstack, "batch", "list", org_id, "--json")
    assert listed.returncode == 0 and orjson.loads(listed.stdout)["data"][0]["id"] == done.id
    shown = orjson.loads(ctl(bstack, "batch", "show", org_id, done.id, "--json").stdout)
    assert shown["status"] == "completed" and shown["request_counts"]["completed"] == 5
    big = client.files.create(file=("big.jsonl", io.BytesIO(lines(2000, max_tokens=48))),
                              purpose="batch")
    running = client.batches.create(input_file_id=big.id, endpoint="/v1/chat/completions",
                                    completion_window="24h")
    wait_for(client, running.id, {"in_progress"})
    everything = orjson.loads(ctl(bstack, "batch", "list", "--json").stdout)
    assert any(b["id"] == running.id and b["org_id"] == org_id for b in everything["data"])
    assert len(everything["runners"]) == 1 and everything["runners"][0]["slots"] > 0
    table = ctl(bstack, "batch", "list")
    assert running.id in table.stdout and "runners" in table.stderr
    with bstack.admin() as admin:
        detailed = admin.get("/health/detailed").json()
        assert len(detailed["batch_runners"]) == 1
        metrics = admin.get("/metrics").text
        # Lines run on the batch gateway instance: their tokens are counted there.
        ran = admin.get(f"http://127.0.0.1:{bstack.batch_gateway_port}/metrics").text
    assert f'llmgw_batch_requests{{org="{org_id}",state="queued"}}' in metrics
    assert "llmgw_batch_runners 1" in metrics
    assert f'llmgw_batch_tokens_total{{model="Qwen/Qwen2.5-7B-Instruct",org="{org_id}",type="output"}}' in ran
    assert "llmgw_batch_tokens_total{" not in metrics  # the realtime instance ran none
    cancelled = ctl(bstack, "batch", "cancel", org_id, running.id, "--json")
    assert cancelled.returncode == 0
    assert orjson.loads(cancelled.stdout)["status"] in ("cancelling", "cancelled")
    wait_for(client, running.id, {"cancelled"})
    with bstack.admin() as admin:
        trail = admin.get("/admin/audit", params={"limit": 5}).json()["data"]
    assert any(e["action"] == "batch.cancel" and e["target"] == f"{org_id}/{running.id}"
               for e in trail)


def test_a_spent_quota_pauses_the_batch_and_a_raised_one_resumes_it(tmp_path_factory):
    stack = TestStack("sim", tmp_path_factory.mktemp("batch-quota"), workers=1, runners=1,
                      sim_args=("--ttft-ms", "5", "--itl-ms", "200"),  # lines of ~0.6 s
                      env={"BATCH_QUOTA_RECHECK_SECS": "1", "MAX_CONCURRENT_BATCH": "3"}).start()
    try:
        org = _org(stack, daily_token_limit=120)  # about 8 of the 30 lines
        client = _client(stack, org["api_key"])
        up = client.files.create(file=("in.jsonl", io.BytesIO(lines(30))), purpose="batch")
        batch = client.batches.create(input_file_id=up.id, endpoint="/v1/chat/completions",
                                      completion_window="24h")
        deadline, most = time.monotonic() + 30, 0
        while client.batches.retrieve(batch.id).request_counts.completed < 3:
            assert time.monotonic() < deadline
            most = max(most, sum(httpx.get(stack.backend_url(n) + "/sim/stats").json()["running"]
                                 for n in ("chat0", "chat1")))
        # MAX_CONCURRENT_BATCH, whatever the runner's slots (lines last long enough that the
        # sampling sees them running)
        assert 1 <= most <= 3
        time.sleep(3)  # the quota is spent: the batch waits, nothing fails
        stalled = client.batches.retrieve(batch.id)
        assert stalled.status == "in_progress" and stalled.request_counts.failed == 0
        assert stalled.request_counts.completed < 30
        time.sleep(2)
        assert client.batches.retrieve(batch.id).request_counts.completed == \
            stalled.request_counts.completed
        with stack.admin() as admin:
            admin.patch(f"/admin/orgs/{org['org']['id']}",
                        json={"daily_token_limit": 10**9}).raise_for_status()
        done = wait_for(client, batch.id, {"completed"})
        assert done.request_counts.completed == 30 and done.request_counts.failed == 0
    finally:
        stack.stop()
