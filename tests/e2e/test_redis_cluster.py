"""The whole gateway on a Redis Cluster of three shards (real redis-server processes on
loopback, REDIS_CLUSTER=true): the admin API, chat, quotas and usage, key revocation through
pub/sub, the Files and Batch APIs with a runner, and each organisation's limits exact under
bursts, with the organisations spread over the shards."""

from __future__ import annotations

import asyncio
import io
import time

import httpx
import openai
import orjson

import pytest

from burst import burst, counts
from redis_topology import Cluster
from stacks import TestStack

CHAT = {"model": "qwen", "messages": [{"role": "user", "content": "hello there"}], "max_tokens": 1}


@pytest.fixture(scope="module")
def cluster_stack(tmp_path_factory):
    cluster = Cluster(tmp_path_factory.mktemp("cluster-redis"), shards=3)
    stack = TestStack("sim", tmp_path_factory.mktemp("cluster-stack"), workers=2, runners=1,
                      sim_args=("--ttft-ms", "0", "--itl-ms", "0"),
                      env={"REDIS_CLUSTER": "true", "GLOBAL_MAX_CONCURRENT": "0"})
    stack.cfg.external_redis_url = cluster.url
    try:
        stack.start()
        yield stack, cluster
    finally:
        stack.stop()
        cluster.stop()


def _chat(stack: TestStack, key: str) -> httpx.Response:
    return httpx.post(stack.base_url + "/v1/chat/completions", json=CHAT, timeout=30,
                      headers={"Authorization": f"Bearer {key}"})


def test_admin_chat_quotas_and_usage_on_a_cluster(cluster_stack):
    stack, cluster = cluster_stack
    orgs = [stack.open_org() for _ in range(12)]
    for org in orgs:
        assert _chat(stack, org["api_key"]).status_code == 200
    with stack.admin() as admin:
        listed = admin.get("/admin/orgs", params={"limit": 100}).json()
        assert {o["org"]["id"] for o in orgs} <= {o["id"] for o in listed["data"]}
        for org in orgs:
            quota = admin.get(f"/admin/quota/{org['org']['id']}").json()
            assert quota["limits"]["daily_request_limit"]["used"] == 1
        usage = admin.get("/admin/usage", params={"window": "1h", "limit": 100})
        assert usage.status_code == 200, usage.text
    assert all(n > 0 for n in cluster.keys_per_node()), cluster.keys_per_node()


def test_a_revoked_key_is_refused_on_every_worker(cluster_stack):
    stack, _ = cluster_stack
    org = stack.open_org()
    key = org["api_key"]
    for _ in range(6):  # every worker knows the key (and caches it)
        assert _chat(stack, key).status_code == 200
    with stack.admin() as admin:
        assert admin.delete(f"/admin/keys/{org['key']['key_id']}").status_code == 200
    deadline = time.monotonic() + 5
    while _chat(stack, key).status_code != 401:
        assert time.monotonic() < deadline, "the revocation reached no worker within 5 s"
        time.sleep(0.1)
    assert [_chat(stack, key).status_code for _ in range(6)] == [401] * 6


def test_each_organisations_limit_is_exact_across_the_shards(cluster_stack):
    stack, _ = cluster_stack
    orgs = [stack.open_org(max_concurrent=40) for _ in range(4)]
    stack.chat_faults(ttft_ms=1500)  # the admitted ones hold their lease

    async def bursts():
        return await asyncio.gather(*(burst([stack.base_url], "/v1/chat/completions", CHAT,
                                            {"Authorization": f"Bearer {o['api_key']}"}, 150)
                                      for o in orgs))
    try:
        outcomes = [counts(answers) for answers in asyncio.run(bursts())]
    finally:
        stack.chat_faults()
    for got in outcomes:
        admitted = got[(200, "")] + got[(503, "backend_unavailable")]
        assert set(got) <= {(200, ""), (429, "limit_concurrent"),
                            (503, "backend_unavailable")}, got
        assert admitted == 40, got


def test_files_and_a_batch_run_on_a_cluster(cluster_stack):
    stack, _ = cluster_stack
    org = stack.open_org(key={"name": "k", "scopes": ["batch"]})
    client = openai.OpenAI(base_url=stack.base_url + "/v1", api_key=org["api_key"],
                           max_retries=0)
    body = b"".join(orjson.dumps({
        "custom_id": f"r{i}", "method": "POST", "url": "/v1/chat/completions",
        "body": {"model": "qwen", "messages": [{"role": "user", "content": f"hi {i}"}],
                 "max_tokens": 4}}) + b"\n" for i in range(20))
    up = client.files.create(file=("in.jsonl", io.BytesIO(body)), purpose="batch")
    batch = client.batches.create(input_file_id=up.id, endpoint="/v1/chat/completions",
                                  completion_window="24h")
    deadline = time.monotonic() + 60
    while (done := client.batches.retrieve(batch.id)).status not in ("completed", "failed"):
        assert time.monotonic() < deadline, done
        time.sleep(0.2)
    assert done.status == "completed" and done.request_counts.completed == 20, done
    out = client.files.content(done.output_file_id).content.splitlines()
    assert sorted(orjson.loads(x)["custom_id"] for x in out) == sorted(f"r{i}" for i in range(20))


def test_nothing_failed_behind_the_answers(cluster_stack):
    """Last: no gateway worker, batch gateway or runner met an error the answers hid (a
    command a cluster refuses, in a background task, would end a worker)."""
    stack, _ = cluster_stack
    for log in stack.logs.glob("*.log"):
        if log.name.startswith(("gateway", "batch-runner")):
            text = log.read_text()
            assert "Traceback" not in text and "Worker exiting" not in text, log.name
