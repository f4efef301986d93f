"""Replays the requests behind real vLLM 0.32 captures and compares the simulator's answers.

vllm_captures/ holds raw responses recorded from vLLM 0.32 (CPU, tiny models); see its README.
Compared: status, headers that matter, JSON key names, key order and value types (recursively),
SSE event sequence, and the values that must agree exactly (object, finish_reason, error types...).
"""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from simproc import Sim

CAPTURES = Path(__file__).parent / "vllm_captures"
J = {"Content-Type": "application/json"}
K = {"Authorization": "Bearer sk-test"}
MSG = [{"role": "system", "content": "You are terse."}, {"role": "user", "content": "Say hello"}]
AM = [{"role": "user", "content": "Say hello"}]  # an Anthropic Messages conversation
EXACT_KEYS = {"object", "model", "finish_reason", "stop_reason", "type", "code", "param", "owned_by",
              "max_model_len", "detail", "role", "version", "parent", "error"}

# case -> (server, method, path, json body or raw bytes, extra headers)
CASES = {
    "models_chat": ("chat", "GET", "/v1/models", None, {}),
    "health": ("chat", "GET", "/health", None, {}),
    "version": ("chat", "GET", "/version", None, {}),
    "tokenize_prompt": ("chat", "POST", "/tokenize", {"model": "tiny-chat", "prompt": "Hello world"}, J),
    "tokenize_messages": ("chat", "POST", "/tokenize",
                          {"model": "tiny-chat", "messages": MSG, "add_generation_prompt": True}, J),
    "detokenize": ("chat", "POST", "/detokenize", {"model": "tiny-chat", "tokens": [10, 20, 30]}, J),
    "chat_nonstream": ("chat", "POST", "/v1/chat/completions",
                       {"model": "tiny-chat", "messages": MSG, "max_tokens": 8, "temperature": 0}, J),
    "chat_nonstream_n2_logprobs": ("chat", "POST", "/v1/chat/completions",
                                   {"model": "tiny-chat", "messages": MSG, "max_tokens": 3, "n": 2,
                                    "logprobs": True, "top_logprobs": 2, "seed": 1}, J),
    "chat_stream": ("chat", "POST", "/v1/chat/completions",
                    {"model": "tiny-chat", "messages": MSG, "max_tokens": 5, "stream": True}, J),
    "chat_stream_usage": ("chat", "POST", "/v1/chat/completions",
                          {"model": "tiny-chat", "messages": MSG, "max_tokens": 5, "stream": True,
                           "stream_options": {"include_usage": True}}, J),
    "chat_stream_usage_continuous": ("chat", "POST", "/v1/chat/completions",
                                     {"model": "tiny-chat", "messages": MSG, "max_tokens": 3, "stream": True,
                                      "stream_options": {"include_usage": True,
                                                         "continuous_usage_stats": True}}, J),
    "completions_nonstream": ("chat", "POST", "/v1/completions",
                              {"model": "tiny-chat", "prompt": "Once upon a time", "max_tokens": 8}, J),
    "completions_stream": ("chat", "POST", "/v1/completions",
                           {"model": "tiny-chat", "prompt": "Once upon a time", "max_tokens": 5,
                            "stream": True}, J),
    "completions_stream_usage": ("chat", "POST", "/v1/completions",
                                 {"model": "tiny-chat", "prompt": "Once upon a time", "max_tokens": 5,
                                  "stream": True, "stream_options": {"include_usage": True}}, J),
    "error_unknown_model": ("chat", "POST", "/v1/chat/completions",
                            {"model": "no-such-model", "messages": MSG, "max_tokens": 4}, J),
    "error_missing_messages": ("chat", "POST", "/v1/chat/completions", {"model": "tiny-chat", "max_tokens": 4}, J),
    "error_max_tokens_0": ("chat", "POST", "/v1/chat/completions",
                           {"model": "tiny-chat", "messages": MSG, "max_tokens": 0}, J),
    "error_malformed_json": ("chat", "POST", "/v1/chat/completions",
                             b'{"model":"tiny-chat", "messages": [}', J),
    "error_prompt_too_long": ("chat", "POST", "/v1/completions",
                              {"model": "tiny-chat", "prompt": "hello " * 600, "max_tokens": 4}, J),
    "error_completions_unknown_model": ("chat", "POST", "/v1/completions",
                                        {"model": "no-such-model", "prompt": "hi", "max_tokens": 4}, J),
    "error_not_found_route": ("chat", "GET", "/v1/nope", None, {}),
    "models_embed": ("embed", "GET", "/v1/models", None, {}),
    "embeddings_float": ("embed", "POST", "/v1/embeddings",
                         {"model": "tiny-embed", "input": ["Hello world", "The quick brown fox"]}, J),
    "embeddings_base64": ("embed", "POST", "/v1/embeddings",
                          {"model": "tiny-embed", "input": "Hello world", "encoding_format": "base64"}, J),
    "embeddings_token_ids": ("embed", "POST", "/v1/embeddings", {"model": "tiny-embed", "input": [[2, 10, 11, 3]]}, J),
    "tokenize_embed": ("embed", "POST", "/tokenize", {"model": "tiny-embed", "prompt": "Hello world"}, J),
    "error_embed_unknown_model": ("embed", "POST", "/v1/embeddings", {"model": "no-such-model", "input": "hi"}, J),
    "error_chat_on_embed_server": ("embed", "POST", "/v1/chat/completions",
                                   {"model": "tiny-embed", "messages": MSG}, J),
    "models_rerank": ("rerank", "GET", "/v1/models", None, K),
    "rerank": ("rerank", "POST", "/v1/rerank",
               {"model": "tiny-rerank", "query": "What is the capital of France?",
                "documents": ["Paris is the capital of France.", "The sky is blue.", "Count from one to ten."]},
               {**J, **K}),
    "rerank_top_n": ("rerank", "POST", "/v1/rerank",
                     {"model": "tiny-rerank", "query": "capital of France", "documents": ["Paris", "blue sky", "ten"],
                      "top_n": 2}, {**J, **K}),
    "rerank_no_v1": ("rerank", "POST", "/rerank",
                     {"model": "tiny-rerank", "query": "capital of France", "documents": ["Paris", "blue sky"]},
                     {**J, **K}),
    "score": ("rerank", "POST", "/v1/score",
              {"model": "tiny-rerank", "text_1": "capital of France", "text_2": ["Paris", "blue sky"]}, {**J, **K}),
    "error_wrong_api_key": ("rerank", "POST", "/v1/rerank", {"model": "tiny-rerank", "query": "q", "documents": ["d"]},
                            {**J, "Authorization": "Bearer wrong-key"}),
    "error_missing_api_key": ("rerank", "GET", "/v1/models", None, {}),
    "health_with_api_key_unauthenticated": ("rerank", "GET", "/health", None, {}),
    "error_rerank_unknown_model": ("rerank", "POST", "/v1/rerank",
                                   {"model": "no-such-model", "query": "q", "documents": ["d"]}, {**J, **K}),
    # The pooling API: /pooling on both servers, /v2/embed on the embedding one, /classify on the
    # classifier (the reranker); /pooling and /classify are outside vLLM's --api-key prefixes.
    "pooling_embed": ("embed", "POST", "/pooling",
                      {"model": "tiny-embed", "input": ["Hello world", "The quick brown fox"]}, J),
    "pooling_embed_base64": ("embed", "POST", "/pooling",
                             {"model": "tiny-embed", "input": "Hello world", "encoding_format": "base64"}, J),
    "cohere_embed": ("embed", "POST", "/v2/embed",
                     {"model": "tiny-embed", "texts": ["Hello world", "The quick brown fox"]}, J),
    "cohere_embed_types": ("embed", "POST", "/v2/embed",
                           {"model": "tiny-embed", "texts": ["Hello world"],
                            "embedding_types": ["float", "binary", "ubinary", "base64"]}, J),
    "error_pooling_wrong_task": ("embed", "POST", "/pooling", {"model": "tiny-embed", "input": "hi", "task": "classify"}, J),
    "error_cohere_embed_no_input": ("embed", "POST", "/v2/embed", {"model": "tiny-embed"}, J),
    "error_classify_on_embed_server": ("embed", "POST", "/classify", {"model": "tiny-embed", "input": "hi"}, J),
    "classify": ("rerank", "POST", "/classify",
                 {"model": "tiny-rerank", "input": ["Hello world", "The quick brown fox"]}, {**J, **K}),
    "classify_no_api_key": ("rerank", "POST", "/classify", {"model": "tiny-rerank", "input": "Hello world"}, J),
    "pooling_classify": ("rerank", "POST", "/pooling", {"model": "tiny-rerank", "input": "Hello world"}, {**J, **K}),
    "error_classify_missing_input": ("rerank", "POST", "/classify", {"model": "tiny-rerank"}, {**J, **K}),
    "error_classify_unknown_model": ("rerank", "POST", "/classify", {"model": "no-such-model", "input": "hi"},
                                     {**J, **K}),
    "error_classify_prompt_too_long": ("rerank", "POST", "/classify",
                                       {"model": "tiny-rerank", "input": "hello " * 600}, {**J, **K}),
    "error_cohere_embed_on_rerank_server": ("rerank", "POST", "/v2/embed", {"model": "tiny-rerank", "texts": ["hi"]},
                                            {**J, **K}),
    # A chat server that also serves a LoRA adapter (vllm_captures/README.txt, "lora").
    "models_chat_lora": ("lora", "GET", "/v1/models", None, {}),
    "chat_lora": ("lora", "POST", "/v1/chat/completions",
                  {"model": "tiny-sql-lora", "messages": MSG, "max_tokens": 8, "temperature": 0}, J),
    "chat_stream_usage_lora": ("lora", "POST", "/v1/chat/completions",
                               {"model": "tiny-sql-lora", "messages": MSG, "max_tokens": 3, "temperature": 0,
                                "stream": True, "stream_options": {"include_usage": True}}, J),
    "completions_lora": ("lora", "POST", "/v1/completions",
                         {"model": "tiny-sql-lora", "prompt": "Once upon a time", "max_tokens": 8,
                          "temperature": 0}, J),
    "tokenize_lora": ("lora", "POST", "/tokenize", {"model": "tiny-sql-lora", "prompt": "Hello world"}, J),
    "error_unknown_model_lora_server": ("lora", "POST", "/v1/chat/completions",
                                        {"model": "no-such-model", "messages": MSG, "max_tokens": 4}, J),
    "error_load_lora_adapter_route": ("lora", "POST", "/v1/load_lora_adapter",
                                      {"lora_name": "x", "lora_path": "/nowhere"}, J),
    **{name: ("chat", "POST", path, body, J) for name, (path, body) in {
        "messages_nonstream": ("/v1/messages", {"model": "tiny-chat", "system": "You are terse.",
                                                "messages": AM, "max_tokens": 8, "temperature": 0}),
        "messages_nonstream_blocks": ("/v1/messages", {
            "model": "tiny-chat", "system": [{"type": "text", "text": "You are terse."}],
            "messages": [{"role": "user", "content": [{"type": "text", "text": "Say"},
                                                      {"type": "text", "text": "hello"}]},
                         {"role": "assistant", "content": "Hi"}, {"role": "user", "content": "Again"}],
            "max_tokens": 6, "temperature": 0}),
        "messages_stream": ("/v1/messages", {"model": "tiny-chat", "system": "You are terse.", "messages": AM,
                                             "max_tokens": 5, "temperature": 0, "stream": True}),
        "messages_count_tokens": ("/v1/messages/count_tokens",
                                  {"model": "tiny-chat", "system": "You are terse.", "messages": AM}),
        "error_messages_no_max_tokens": ("/v1/messages", {"model": "tiny-chat", "messages": AM}),
        "error_messages_max_tokens_0": ("/v1/messages", {"model": "tiny-chat", "messages": AM, "max_tokens": 0}),
        "error_messages_not_a_list": ("/v1/messages", {"model": "tiny-chat", "messages": "hi", "max_tokens": 4}),
        "error_messages_wrong_role": ("/v1/messages", {"model": "tiny-chat", "max_tokens": 4,
                                                       "messages": [{"role": "tool", "content": "hi"}]}),
        "error_messages_unknown_model": ("/v1/messages", {"model": "no-such-model", "messages": AM,
                                                          "max_tokens": 4}),
        "error_messages_unknown_model_stream": ("/v1/messages", {"model": "no-such-model", "messages": AM,
                                                                 "max_tokens": 4, "stream": True}),
        "error_messages_prompt_too_long": ("/v1/messages", {
            "model": "tiny-chat", "messages": [{"role": "user", "content": "hello " * 600}], "max_tokens": 4}),
        "error_messages_max_tokens_too_large": ("/v1/messages", {"model": "tiny-chat", "messages": AM,
                                                                 "max_tokens": 100000}),
        "error_messages_bad_block": ("/v1/messages", {
            "model": "tiny-chat", "messages": [{"role": "user", "content": [{"type": "nope", "text": "x"}]}],
            "max_tokens": 4}),
        "error_messages_malformed_json": ("/v1/messages", b'{"model":"tiny-chat", "messages": [}'),
    }.items()},
}


def parse_capture(name: str) -> tuple[int, dict, str]:
    raw = (CAPTURES / f"{name}.txt").read_bytes().decode()
    head, _, body = raw.partition("\r\n\r\n")
    lines = head.split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines[1:])
    return int(lines[0].split()[1]), {k.lower(): v for k, v in headers.items()}, body


def sse_events(body: str) -> list[str]:
    return [e[len("data: "):] for e in body.split("\n\n") if e.strip()]


def named_events(body: str) -> list[tuple[str, str]]:
    """(event, data) of an Anthropic-style stream, whose events each have an `event:` line."""
    out = []
    for e in body.split("\n\n"):
        if e.strip():
            head, _, data = e.partition("\ndata: ")
            out.append((head.removeprefix("event: "), data))
    return out


def same_shape(real, sim, path="$") -> None:
    """Keys (in order), types and the values in EXACT_KEYS must agree; lists of scalars only by type."""
    assert type(sim) is type(real), f"{path}: {type(sim).__name__} != real {type(real).__name__}"
    if isinstance(real, dict):
        assert list(sim) == list(real), f"{path}: keys {list(sim)} != real {list(real)}"
        for key in real:
            if key in EXACT_KEYS and not isinstance(real[key], (dict, list)):
                assert sim[key] == real[key], f"{path}.{key}: {sim[key]!r} != real {real[key]!r}"
            same_shape(real[key], sim[key], f"{path}.{key}")
    elif isinstance(real, list):
        if real and isinstance(real[0], (dict, list)):
            assert len(sim) == len(real), f"{path}: {len(sim)} items != real {len(real)}"
        for i, (r, s) in enumerate(zip(real, sim)):
            same_shape(r, s, f"{path}[{i}]")


@pytest.fixture(scope="module")
def servers():
    sims = {
        "chat": Sim("--kind", "chat", "--served-model-name", "tiny-chat", "--max-model-len", "512",
                    "--model", "tiny/models/chat"),
        "embed": Sim("--kind", "embed", "--served-model-name", "tiny-embed", "--max-model-len", "512",
                     "--embed-dim", "64"),
        "rerank": Sim("--kind", "rerank", "--served-model-name", "tiny-rerank", "--max-model-len", "512",
                      "--api-key", "sk-test"),
        "lora": Sim("--kind", "chat", "--served-model-name", "tiny-chat", "--max-model-len", "512",
                    "--model", "tiny/models/chat", "--enable-lora", "--max-lora-rank", "8", "--lora-modules",
                    '{"name": "tiny-sql-lora", "path": "tiny/lora/tiny-sql-lora", "base_model_name": "tiny-chat"}'),
    }
    yield sims
    for sim in sims.values():
        sim.stop()


@pytest.mark.timeout(20)
@pytest.mark.parametrize("case", sorted(CASES))
def test_matches_real_vllm(servers, case):
    server, method, path, body, headers = CASES[case]
    status, real_headers, real_body = parse_capture(case)
    kw = {"content": body} if isinstance(body, bytes) else {"json": body} if body is not None else {}
    r = servers[server].http.request(method, path, headers=headers, **kw)
    assert r.status_code == status, r.text
    for name in ("content-type", "vary", "transfer-encoding"):
        assert r.headers.get(name) == real_headers.get(name), name
    if "content-length" in real_headers and not real_body:
        assert r.content == b""
    if real_body.startswith("event: "):
        real_events, sim_events = named_events(real_body), named_events(r.text)
        assert [e for e, _ in sim_events] == [e for e, _ in real_events]
        for (_, real_ev), (_, sim_ev) in zip(real_events, sim_events):
            same_shape(json.loads(real_ev), json.loads(sim_ev))
    elif real_headers.get("content-type", "").startswith("text/event-stream"):
        real_events, sim_events = sse_events(real_body), sse_events(r.text)
        assert len(sim_events) == len(real_events)
        assert sim_events[-1] == real_events[-1] == "[DONE]"
        for real_ev, sim_ev in zip(real_events[:-1], sim_events[:-1]):
            same_shape(json.loads(real_ev), json.loads(sim_ev))
    elif real_body:
        same_shape(json.loads(real_body), r.json())


@pytest.mark.timeout(20)
@pytest.mark.parametrize("case,server", [("metrics_chat_after_traffic", "chat"), ("metrics_embed", "embed")])
def test_metrics_families_and_labels_exist_in_real_vllm(servers, case, server):
    """Every sample the simulator exports exists in real vLLM's output with the same label names."""
    _, real_headers, real_body = parse_capture(case)
    r = servers[server].http.get("/metrics")
    assert r.headers["content-type"] == real_headers["content-type"]

    def shapes(text: str, model: str) -> set[str]:
        out = set()
        for line in text.splitlines():
            if line.startswith("vllm:"):
                series = line.rsplit(" ", 1)[0].replace(model, "M")
                out.add(series.split("le=")[0] if "_bucket{" in series else series)
        return out

    real_model = "tiny-chat" if server == "chat" else "tiny-embed"
    missing = shapes(r.text, real_model) - shapes(real_body, real_model)
    assert not missing, sorted(missing)

    def families(text: str) -> list[str]:  # vllm:cache_config_info (engine config dump) is not simulated
        return [x for x in text.splitlines() if x.startswith("# TYPE vllm:") and "cache_config_info" not in x]

    assert families(r.text) == families(real_body)  # same families, same types, same order
    required = ["vllm:num_requests_running", "vllm:num_requests_waiting", "vllm:kv_cache_usage_perc",
                "vllm:prompt_tokens_total", "vllm:generation_tokens_total", "vllm:request_success_total",
                "vllm:e2e_request_latency_seconds_bucket", "vllm:time_to_first_token_seconds_bucket"]
    for name in required:
        assert name + "{" in r.text


def test_unauthorized_has_no_vary_header_like_real(servers):
    r = httpx.get(servers["rerank"].url + "/v1/models")
    assert r.status_code == 401 and r.json() == {"error": "Unauthorized"} and "vary" not in r.headers


def test_lora_listing_and_unknown_model_message_like_real(servers):
    """The adapter's card (id, root, parent) after the base model's, and a 404 message that
    lists the base model only, exactly as vLLM's."""
    _, _, real = parse_capture("models_chat_lora")
    sim = servers["lora"].http.get("/v1/models").json()
    assert [(m["id"], m["root"], m["parent"]) for m in sim["data"]] == \
        [(m["id"], m["root"], m["parent"]) for m in json.loads(real)["data"]]
    _, _, real = parse_capture("error_unknown_model_lora_server")
    _, _, _, body, _ = CASES["error_unknown_model_lora_server"]
    sim = servers["lora"].http.post("/v1/chat/completions", json=body)
    assert sim.json() == json.loads(real)
