"""Contract: the simulator's responses have the same status, content type and JSON shape as vLLM's."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import pytest

from shape_diff import diff, diff_streams, event_shapes, shape, sse_events

# Boot of the real servers is charged to the first test; 900 s leaves room for a busy machine.
pytestmark = [pytest.mark.vllm, pytest.mark.timeout(900)]

MSGS = [{"role": "system", "content": "You are terse."}, {"role": "user", "content": "Say hello"}]
CHAT = {"model": "tiny-chat", "messages": MSGS, "max_tokens": 5, "temperature": 0}
COMPLETION = {"model": "tiny-chat", "prompt": "Once upon a time", "max_tokens": 5, "temperature": 0}
USAGE = {"stream_options": {"include_usage": True}}
# Anthropic's Messages API (vLLM's /v1/messages): the system prompt beside the messages.
MESSAGES = {"model": "tiny-chat", "system": "You are terse.", "messages": MSGS[1:], "max_tokens": 5,
            "temperature": 0}
RERANK = {"model": "tiny-rerank", "query": "What is the capital of France?",
          "documents": ["Paris is the capital of France.", "The sky is blue.", "Ten."]}


@dataclass(frozen=True)
class Case:
    id: str
    server: str  # chat | embed | rerank
    path: str
    body: Any = None  # dict -> JSON; bytes -> sent raw; None -> GET
    mode: str = "json"  # json | sse | empty
    headers: dict = field(default_factory=dict)


CASES = [
    Case("models-chat", "chat", "/v1/models"),
    Case("models-embed", "embed", "/v1/models"),
    Case("models-rerank", "rerank", "/v1/models"),
    Case("health", "chat", "/health", mode="empty"),
    Case("version", "chat", "/version"),
    Case("tokenize-prompt", "chat", "/tokenize", {"model": "tiny-chat", "prompt": "Hello world"}),
    Case("tokenize-messages", "chat", "/tokenize",
         {"model": "tiny-chat", "messages": MSGS, "add_generation_prompt": True}),
    Case("chat", "chat", "/v1/chat/completions", CHAT),
    Case("chat-stream", "chat", "/v1/chat/completions", {**CHAT, "stream": True}, "sse"),
    Case("chat-stream-usage", "chat", "/v1/chat/completions", {**CHAT, "stream": True, **USAGE}, "sse"),
    Case("completions", "chat", "/v1/completions", COMPLETION),
    Case("completions-stream", "chat", "/v1/completions", {**COMPLETION, "stream": True}, "sse"),
    Case("completions-stream-usage", "chat", "/v1/completions",
         {**COMPLETION, "stream": True, **USAGE}, "sse"),
    Case("messages", "chat", "/v1/messages", MESSAGES),
    Case("messages-blocks", "chat", "/v1/messages",
         {**MESSAGES, "system": [{"type": "text", "text": "Be brief."}],
          "messages": [{"role": "user", "content": [{"type": "text", "text": "Say"}, {"type": "text", "text": "hi"}]},
                       {"role": "assistant", "content": "Hi"}, {"role": "user", "content": "Again"}]}),
    Case("messages-stream", "chat", "/v1/messages", {**MESSAGES, "stream": True}, "sse"),
    Case("messages-count-tokens", "chat", "/v1/messages/count_tokens",
         {"model": "tiny-chat", "system": "You are terse.", "messages": MSGS[1:]}),
    Case("embeddings-float", "embed", "/v1/embeddings",
         {"model": "tiny-embed", "input": ["Hello world", "The quick brown fox"]}),
    Case("embeddings-base64", "embed", "/v1/embeddings",
         {"model": "tiny-embed", "input": "Hello world", "encoding_format": "base64"}),
    Case("rerank", "rerank", "/v1/rerank", RERANK),
    Case("rerank-top-n", "rerank", "/v1/rerank", {**RERANK, "top_n": 2}),
    Case("pooling-embed", "embed", "/pooling", {"model": "tiny-embed", "input": ["Hello world", "Hi"]}),
    Case("pooling-classify", "rerank", "/pooling", {"model": "tiny-rerank", "input": "Hello world"}),
    Case("classify", "rerank", "/classify", {"model": "tiny-rerank", "input": ["Hello world", "Hi"]}),
    Case("cohere-embed", "embed", "/v2/embed",
         {"model": "tiny-embed", "texts": ["Hello world"], "embedding_types": ["float", "binary", "base64"]}),
    # Errors: the same status and the same error-object shape.
    Case("error-unknown-model", "chat", "/v1/chat/completions", {**CHAT, "model": "no-such-model"}),
    Case("error-unknown-model-completions", "chat", "/v1/completions",
         {**COMPLETION, "model": "no-such-model"}),
    Case("error-unknown-model-embeddings", "embed", "/v1/embeddings", {"model": "nope", "input": "x"}),
    Case("error-missing-messages", "chat", "/v1/chat/completions", {"model": "tiny-chat", "max_tokens": 4}),
    Case("error-max-tokens-0", "chat", "/v1/chat/completions", {**CHAT, "max_tokens": 0}),
    Case("error-malformed-json", "chat", "/v1/chat/completions", b'{"model": "tiny-chat", "messages": [}'),
    Case("error-wrong-api-key", "chat", "/v1/chat/completions", CHAT,
         headers={"Authorization": "Bearer wrong-key"}),
    Case("error-wrong-api-key-rerank", "rerank", "/v1/rerank", RERANK,
         headers={"Authorization": "Bearer wrong-key"}),
    Case("error-pooling-wrong-task", "embed", "/pooling", {"model": "tiny-embed", "input": "x", "task": "classify"}),
    Case("error-classify-unknown-model", "rerank", "/classify", {"model": "nope", "input": "x"}),
    Case("error-classify-on-embed", "embed", "/classify", {"model": "tiny-embed", "input": "x"}),
    Case("error-cohere-embed-no-input", "embed", "/v2/embed", {"model": "tiny-embed"}),
    Case("error-unknown-route", "chat", "/v1/no-such-route"),
    Case("error-messages-unknown-model", "chat", "/v1/messages", {**MESSAGES, "model": "no-such-model"}),
    Case("error-messages-no-max-tokens", "chat", "/v1/messages",
         {k: v for k, v in MESSAGES.items() if k != "max_tokens"}),
    Case("error-messages-wrong-role", "chat", "/v1/messages",
         {**MESSAGES, "messages": [{"role": "tool", "content": "x"}]}),
    Case("error-messages-prompt-too-long", "chat", "/v1/messages",
         {**MESSAGES, "messages": [{"role": "user", "content": "hello " * 5000}]}),
    Case("error-messages-max-tokens-too-large", "chat", "/v1/messages", {**MESSAGES, "max_tokens": 100000}),
]


def send(client, case: Case):
    if case.body is None:
        return client.get(case.path, headers=case.headers)
    if isinstance(case.body, bytes):
        headers = {"Content-Type": "application/json", **case.headers}
        return client.post(case.path, content=case.body, headers=headers)
    return client.post(case.path, json=case.body, headers=case.headers)


def body_shape(resp, mode: str) -> Any:
    if mode == "sse":
        return event_shapes(sse_events(resp.text))
    if mode == "empty":
        return resp.text
    return shape(resp.json())


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_same_shape_as_vllm(case: Case, clients) -> None:
    real = send(clients["real"][case.server], case)
    sim = send(clients["sim"][case.server], case)
    assert sim.status_code == real.status_code, f"real said {real.status_code}: {real.text[:300]}"
    assert sim.headers.get("content-type") == real.headers.get("content-type")
    real_shape, sim_shape = body_shape(real, case.mode), body_shape(sim, case.mode)
    if case.mode == "sse":
        problems = diff_streams(real_shape, sim_shape)
    elif case.mode == "empty":
        problems = [] if real_shape == sim_shape else [f"body {sim_shape!r}, real {real_shape!r}"]
    else:
        problems = diff(real_shape, sim_shape)
    assert not problems, "\n".join(problems)


# Families a gateway or dashboard reads. Real vLLM also exposes engine internals (estimated_flops,
# mm_cache, prefix-cache sources, admission_rejections, cache_config_info, ...) that the
# simulator need not copy; the `*_created` gauges are prometheus_client bookkeeping.
CORE_METRICS = [
    "vllm:num_requests_running", "vllm:num_requests_waiting", "vllm:kv_cache_usage_perc",
    "vllm:prompt_tokens_total", "vllm:generation_tokens_total", "vllm:request_success_total",
    "vllm:num_preemptions_total", "vllm:time_to_first_token_seconds",
    "vllm:inter_token_latency_seconds", "vllm:e2e_request_latency_seconds",
    "vllm:request_queue_time_seconds", "vllm:request_prompt_tokens", "vllm:request_generation_tokens",
]


def metric_families(text: str) -> dict[str, tuple[str, frozenset[str]]]:
    """{family: (type, label names seen on its samples)} from Prometheus text."""
    families = {name: (kind, set()) for name, kind in re.findall(r"^# TYPE (\S+) (\w+)$", text, re.M)}
    for sample, labels in re.findall(r"^([^#\s{]+)\{([^}]*)\}", text, re.M):
        family = next((f for f in (sample, re.sub(r"_(bucket|count|sum)$", "", sample)) if f in families), None)
        if family:
            families[family][1].update(re.findall(r'(\w+)="', labels))
    return {name: (kind, frozenset(labels)) for name, (kind, labels) in families.items()}


def test_same_core_metric_families(clients) -> None:
    # Traffic first, so histograms and per-reason counters have samples (and labels) on both sides.
    for side in ("real", "sim"):
        assert clients[side]["chat"].post("/v1/completions", json=COMPLETION).status_code == 200
    real = metric_families(clients["real"]["chat"].get("/metrics").text)
    sim = metric_families(clients["sim"]["chat"].get("/metrics").text)
    problems = [f"{name}: real {real.get(name)} vs simulator {sim.get(name)}"
                for name in CORE_METRICS if name not in real or sim.get(name) != real[name]]
    assert not problems, "\n".join(problems)
