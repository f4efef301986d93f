"""End-to-end through a real gunicorn gateway with the official openai SDK as the client.

Each test runs twice: against the vLLM simulator and against real vLLM on CPU (tiny models).
"""

from __future__ import annotations

import re
import time

import httpx
import openai
import pytest

CHAT = "Qwen/Qwen2.5-7B-Instruct"
SQL = "Snowflake/Arctic-Text2SQL-R1-7B"
EMBED = "Snowflake/snowflake-arctic-embed-l-v2.0"
RERANK = "BAAI/bge-reranker-v2-m3"
MESSAGES = [{"role": "user", "content": "Say hello in five words."}]


@pytest.fixture
def client(stack) -> openai.OpenAI:
    return openai.OpenAI(base_url=stack.base_url + "/v1", api_key=stack.api_key, max_retries=0,
                         timeout=60)


def test_chat_completion(client):
    resp = client.chat.completions.create(model="qwen", messages=MESSAGES, max_tokens=8)
    assert resp.object == "chat.completion"
    assert resp.model == CHAT  # the backend's served name is rewritten to the public one
    assert resp.choices[0].message.role == "assistant"
    assert isinstance(resp.choices[0].message.content, str)
    assert resp.usage.completion_tokens <= 8 and resp.usage.prompt_tokens > 0


def test_chat_stream_arrives_as_chunks_with_usage(client):
    stream = client.chat.completions.create(model="qwen", messages=MESSAGES, max_tokens=8,
                                            stream=True, stream_options={"include_usage": True})
    chunks = list(stream)
    assert len(chunks) >= 3
    assert all(c.model == CHAT for c in chunks)
    assert chunks[0].choices[0].delta.role == "assistant"
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens <= 8
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert isinstance(text, str)
    assert any(c.choices and c.choices[0].finish_reason for c in chunks)


def test_completions_plain_and_streaming(client):
    resp = client.completions.create(model=CHAT, prompt="Once upon a time", max_tokens=6)
    assert resp.object == "text_completion" and resp.model == CHAT
    assert isinstance(resp.choices[0].text, str) and resp.usage.completion_tokens <= 6
    chunks = list(client.completions.create(model="qwen", prompt="Once upon a time",
                                            max_tokens=6, stream=True))
    assert len(chunks) >= 2 and all(c.model == CHAT for c in chunks)
    assert chunks[-1].choices[0].finish_reason in {"length", "stop"}


def test_embeddings_float_and_base64(client):
    # The SDK asks for base64 unless told otherwise and decodes it; ask for floats too.
    packed = client.embeddings.create(model="snowflake-arctic-embed", input=["first", "second"])
    floats = client.embeddings.create(model=EMBED, input=["first", "second"], encoding_format="float")
    assert packed.model == EMBED and floats.model == EMBED
    assert [d.index for d in floats.data] == [0, 1]
    dim = len(floats.data[0].embedding)
    assert dim > 0 and all(len(d.embedding) == dim for d in packed.data)
    assert packed.data[0].embedding == pytest.approx(floats.data[0].embedding, rel=1e-5, abs=1e-6)
    assert floats.usage.prompt_tokens > 0


def test_rerank_over_http(stack):
    body = {"model": "bge-reranker-v2-m3", "query": "What is the capital of France?",
            "documents": ["Paris is the capital of France", "London is a city", "Bananas"]}
    resp = httpx.post(stack.base_url + "/v1/rerank", json=body, timeout=60, headers=stack.auth)
    assert resp.status_code == 200, resp.text
    data = resp.json()
    assert data["model"] == RERANK
    scores = [r["relevance_score"] for r in data["results"]]
    assert sorted(r["index"] for r in data["results"]) == [0, 1, 2]
    assert scores == sorted(scores, reverse=True)


def test_models_lists_public_names(client):
    models = {m.id: m for m in client.models.list()}
    # and the chat model's LoRA adapters (routing.yaml; test_lora.py)
    assert set(models) == {CHAT, SQL, EMBED, RERANK, "acme/sql-assistant", "acme/poet"}
    assert models[CHAT].model_extra["aliases"] == ["qwen"]


def test_models_retrieve_by_name_or_alias_and_unknown_is_404(client, stack):
    card = client.models.retrieve("qwen")
    assert card.id == "Qwen/Qwen2.5-7B-Instruct" and "chat" in card.endpoints
    assert client.models.retrieve("Qwen/Qwen2.5-7B-Instruct").id == card.id
    with pytest.raises(openai.NotFoundError) as err:
        client.models.retrieve("gpt-4")
    assert err.value.body["code"] == "model_not_found"
    # a model no scope of the key opens is as unknown as one that does not exist
    embed_only = openai.OpenAI(base_url=stack.base_url + "/v1", max_retries=0,
                               api_key=stack.create_org(key={"scopes": ["embeddings"]})["api_key"])
    with pytest.raises(openai.NotFoundError):
        embed_only.models.retrieve("qwen")
    assert embed_only.models.retrieve("snowflake-arctic-embed").endpoints == ["embeddings"]


def test_text2sql_without_model_field(stack):
    body = {"messages": [{"role": "user", "content": "Show all users"}], "max_tokens": 8}
    resp = httpx.post(stack.base_url + "/v1/text2sql", json=body, timeout=60, headers=stack.auth)
    assert resp.status_code == 200, resp.text
    assert resp.json()["model"] == SQL
    assert resp.json()["choices"][0]["message"]["role"] == "assistant"


def test_text2sql_through_the_sdk(client):
    resp = client.post("/text2sql", cast_to=openai.types.chat.ChatCompletion,
                       body={"model": "text2sql", "messages": MESSAGES, "max_tokens": 4})
    assert resp.model == SQL


def _served(metrics_text: str) -> float:
    pattern = re.compile(r'^vllm:request_success_total\{[^}]*\}\s+([0-9.e+]+)$', re.M)
    return sum(float(v) for v in pattern.findall(metrics_text))


def _busy(metrics_text: str) -> float:
    pattern = re.compile(r'^vllm:num_requests_(?:running|waiting)\{[^}]*\}\s+([0-9.e+]+)$', re.M)
    return sum(float(v) for v in pattern.findall(metrics_text))


def test_both_chat_replicas_serve(stack, client):
    # Ties go to the backend reporting less load: a generation an earlier test left running
    # on one replica would rightly draw every request to the other. Start from idle replicas,
    # and let the gateway's view see them idle (it reads /metrics every second).
    deadline = time.monotonic() + 120
    while any(_busy(httpx.get(stack.backend_url(n) + "/metrics").text) for n in ("chat0", "chat1")):
        assert time.monotonic() < deadline, "a chat replica stayed busy for 2 minutes"
        time.sleep(0.5)
    time.sleep(2.5)
    before = {n: _served(httpx.get(stack.backend_url(n) + "/metrics").text) for n in ("chat0", "chat1")}
    for _ in range(20):
        client.chat.completions.create(model="qwen", messages=MESSAGES, max_tokens=2)
    after = {n: _served(httpx.get(stack.backend_url(n) + "/metrics").text) for n in ("chat0", "chat1")}
    served = {n: after[n] - before[n] for n in after}
    assert sum(served.values()) == 20 and min(served.values()) >= 1, served


def test_request_id_reaches_the_backend(stack):
    # vLLM names its completion after the X-Request-Id it receives: proof the header was forwarded.
    resp = httpx.post(stack.base_url + "/v1/chat/completions", timeout=60,
                      headers={**stack.auth, "X-Request-ID": "trace-e2e-42"},
                      json={"model": "qwen", "messages": MESSAGES, "max_tokens": 2})
    assert resp.status_code == 200 and resp.headers["x-request-id"] == "trace-e2e-42"
    assert resp.json()["id"] == "chatcmpl-trace-e2e-42"
