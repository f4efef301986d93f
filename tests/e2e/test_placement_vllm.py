"""Prefix placement against real vLLM on CPU (two chat replicas, prefix caching on, as vLLM's
default): requests sharing a prompt's start raise `vllm:prefix_cache_hits` on the replica the
gateway chose, and the pool's hit rate is higher under the `prefix` policy than under
`random`, each through a gateway of its own on the same backends."""

from __future__ import annotations

import dataclasses
import re

import httpx
import orjson
import pytest

from stack.processes import start_gateway, stop, wait_healthy
from stacks import E2E_ROUTING, free_port

pytestmark = pytest.mark.vllm

PREFIXES = 12
REPEATS = 4  # requests per prefix, each with its own question
_SAMPLE = re.compile(r'^vllm:prefix_cache_(hits|queries)_total\{[^}]*\} ([0-9.e+]+)$', re.M)


@pytest.fixture(scope="module")
def gateways(vllm_stack, tmp_path_factory):
    """A `prefix` and a `random` gateway (one worker each) in front of the same two replicas."""
    tmp = tmp_path_factory.mktemp("placement-vllm")
    urls, procs = {}, []
    for policy in ("prefix", "random"):
        routing = tmp / f"{policy}.yaml"
        # The tiny model's context is 512 tokens: a 256-byte key, which the shared system
        # prompt fills (so even a first turn is bound to its document's replica).
        spec = "{name: prefix, prefix_bytes: 256}" if policy == "prefix" else "{name: random}"
        table = E2E_ROUTING.read_text()
        assert "  chat:\n    backends:" in table  # the chat pool gets the policy
        routing.write_text(table.replace(
            "  chat:\n    backends:", f"  chat:\n    policy: {spec}\n    backends:"))
        cfg = dataclasses.replace(vllm_stack.cfg, state_dir=tmp, env={
            **vllm_stack.cfg.env, "ROUTING_FILE": str(routing), "GATEWAY_WORKERS": "1"})
        port = free_port()
        procs.append(start_gateway(vllm_stack.specs, cfg, port=port, name=f"gateway-{policy}"))
        urls[policy] = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(procs, 60, tmp / "logs")
        yield urls, tmp / "logs"
    finally:
        stop([p.popen.pid for p in procs], grace=10)


def _cache(stack) -> dict[str, tuple[float, float]]:
    """(hits, queries) in tokens, per chat replica."""
    out = {}
    for name in ("chat0", "chat1"):
        text = httpx.get(stack.backend_url(name) + "/metrics", timeout=10).text
        found = {kind: sum(float(v) for k, v in _SAMPLE.findall(text) if k == kind)
                 for kind in ("hits", "queries")}
        out[name] = (found["hits"], found["queries"])
    return out


def _drive(url: str, key: str, policy: str) -> None:
    with httpx.Client(timeout=120, headers={"Authorization": f"Bearer {key}"}) as client:
        for p in range(PREFIXES):
            # About 150 tokens shared (the tiny model's context is 512), distinct per policy so
            # the runs cannot help each other.
            shared = f"[{policy} document {p}] " + " ".join(f"fact{p}x{i}" for i in range(40))
            for r in range(REPEATS):
                resp = client.post(url + "/v1/chat/completions", headers={
                    "X-Request-ID": f"{policy}-{p}-{r}"}, json={
                    "model": "qwen", "max_tokens": 1,
                    "messages": [{"role": "system", "content": shared},
                                 {"role": "user", "content": f"question {r} about {p}"}]})
                assert resp.status_code == 200, resp.text


def _rate(before: dict, after: dict) -> float:
    hits = sum(after[n][0] - before[n][0] for n in after)
    queries = sum(after[n][1] - before[n][1] for n in after)
    return hits / queries


def test_prefix_routing_raises_the_hit_rate_over_random(vllm_stack, gateways):
    urls, logs = gateways
    key = vllm_stack.open_org()["api_key"]
    rates = {}
    for policy in ("random", "prefix"):
        before = _cache(vllm_stack)
        _drive(urls[policy], key, policy)
        after = _cache(vllm_stack)
        rates[policy] = _rate(before, after)
        if policy == "prefix":
            chosen = _chosen(logs / "gateway-prefix.log")
            # each prefix went to one replica, and the replicas' hits rose where they went
            assert all(len(set(b)) == 1 for b in chosen.values()), chosen
            for name in ("chat0", "chat1"):
                if any(b[0] == name for b in chosen.values()):
                    assert after[name][0] > before[name][0], (name, before, after)
    assert rates["prefix"] > rates["random"] + 0.05, rates


def _chosen(log) -> dict[int, list[str]]:
    chosen: dict[int, list[str]] = {}
    for line in log.read_bytes().splitlines():
        if line.startswith(b"{") and b'"prefix-' in line:
            record = orjson.loads(line)
            chosen.setdefault(int(record["request_id"].split("-")[1]), []).append(
                record["backend"])
    return chosen
