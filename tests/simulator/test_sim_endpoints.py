"""Every endpoint's shape and behaviour, through httpx and the official openai SDK."""

from __future__ import annotations

import base64
import math
import struct

import httpx
import openai
import pytest

pytestmark = pytest.mark.timeout(20)
MSGS = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Name a color."}]


def sdk(sim, key: str = "none") -> openai.OpenAI:
    return openai.OpenAI(base_url=sim.url + "/v1", api_key=key, max_retries=0, timeout=10)


def test_chat_nonstream_via_sdk(chat_sim):
    r = sdk(chat_sim).chat.completions.create(model="sim-chat", messages=MSGS, max_tokens=5)
    assert r.id.startswith("chatcmpl-") and r.object == "chat.completion" and r.model == "sim-chat"
    assert r.system_fingerprint.startswith("vllm-0.32.0-")
    (choice,) = r.choices
    assert choice.finish_reason == "length" and choice.message.role == "assistant"
    assert len(choice.message.content.split()) == 5
    assert r.usage.completion_tokens == 5 and r.usage.total_tokens == r.usage.prompt_tokens + 5


def test_alias_and_missing_model_answer_with_first_served_name(chat_sim):
    for body in ({"model": "alias-chat", "messages": MSGS}, {"messages": MSGS}):
        r = chat_sim.post("/v1/chat/completions", body)
        assert r.status_code == 200 and r.json()["model"] == "sim-chat"


def test_default_max_tokens_and_stop_vs_length(chat_sim):
    default = chat_sim.post("/v1/chat/completions", {"messages": MSGS}).json()
    assert default["usage"]["completion_tokens"] == 16 and default["choices"][0]["finish_reason"] == "length"
    # Natural (EOS) length is 16..128 tokens: with room for 400 the answer stops by itself.
    long = chat_sim.post("/v1/chat/completions", {"messages": MSGS, "max_tokens": 400}).json()
    assert long["choices"][0]["finish_reason"] == "stop"
    assert 16 <= long["usage"]["completion_tokens"] <= 128
    # ignore_eos makes it fill max_tokens, clamped to the context left (max-model-len 512).
    full = chat_sim.post("/v1/chat/completions", {"messages": MSGS, "max_tokens": 4000, "ignore_eos": True}).json()
    assert full["usage"]["total_tokens"] == 512 and full["choices"][0]["finish_reason"] == "length"


def test_n_choices_differ_and_are_deterministic(chat_sim):
    body = {"messages": MSGS, "max_tokens": 6, "n": 3}
    a, b = (chat_sim.post("/v1/chat/completions", body).json() for _ in range(2))
    texts = [c["message"]["content"] for c in a["choices"]]
    assert [c["index"] for c in a["choices"]] == [0, 1, 2] and len(set(texts)) == 3
    assert texts == [c["message"]["content"] for c in b["choices"]]
    assert a["usage"]["completion_tokens"] == 18


def test_output_depends_on_prompt_seed_and_index_only(chat_sim, start_sim):
    def text(sim, **extra):
        body = {"messages": MSGS, "max_tokens": 8, **extra}
        return sim.post("/v1/chat/completions", body).json()["choices"][0]["message"]["content"]

    base = text(chat_sim)
    assert text(chat_sim) == base and text(chat_sim, temperature=1.5) == base
    assert text(chat_sim, seed=7) != base and text(chat_sim, seed=7) == text(chat_sim, seed=7)
    other = start_sim("--served-model-name", "x")  # another process gives the same words
    assert text(other) == base


def test_completions_multi_prompt_and_n(chat_sim):
    r = sdk(chat_sim).completions.create(model="sim-chat", prompt=["one two", "three"], max_tokens=3, n=2)
    assert r.id.startswith("cmpl-") and r.object == "text_completion"
    assert [c.index for c in r.choices] == [0, 1, 2, 3]
    assert r.choices[0].text != r.choices[1].text
    assert r.usage.prompt_tokens == 3 and r.usage.completion_tokens == 12


def test_completions_token_id_prompts_and_token_ids(chat_sim):
    r = chat_sim.post("/v1/completions", {"prompt": [[5, 6, 7], [8]], "max_tokens": 2, "return_token_ids": True})
    body = r.json()
    assert body["usage"]["prompt_tokens"] == 4
    assert body["choices"][0]["prompt_token_ids"] == [5, 6, 7] and len(body["choices"][1]["token_ids"]) == 2


def test_logprobs_shapes(chat_sim):
    chat = chat_sim.post("/v1/chat/completions",
                         {"messages": MSGS, "max_tokens": 3, "logprobs": True, "top_logprobs": 2}).json()
    content = chat["choices"][0]["logprobs"]["content"]
    assert len(content) == 3 and len(content[0]["top_logprobs"]) == 2
    assert content[0]["top_logprobs"][0]["token"] == content[0]["token"] and content[0]["logprob"] < 0
    comp = chat_sim.post("/v1/completions", {"prompt": "a b", "max_tokens": 3, "logprobs": 1}).json()
    lp = comp["choices"][0]["logprobs"]
    assert list(lp) == ["text_offset", "token_logprobs", "tokens", "top_logprobs"]
    assert lp["text_offset"][0] == 0 and len(lp["top_logprobs"][0]) == 2


def test_tokenize_counts_match_usage_and_detokenize_round_trips(chat_sim):
    tok = chat_sim.post("/tokenize", {"messages": MSGS}).json()
    assert list(tok) == ["count", "max_model_len", "tokens", "token_strs"] and tok["max_model_len"] == 512
    chat = chat_sim.post("/v1/chat/completions", {"messages": MSGS, "max_tokens": 1}).json()
    assert tok["count"] == len(tok["tokens"]) == chat["usage"]["prompt_tokens"]
    text = "Hello, brave new world!\nSecond line."
    tok = chat_sim.post("/tokenize", {"prompt": text, "return_token_strs": True}).json()
    comp = chat_sim.post("/v1/completions", {"prompt": text, "max_tokens": 1}).json()
    assert tok["count"] == comp["usage"]["prompt_tokens"] and tok["token_strs"][1] == ","
    assert chat_sim.post("/detokenize", {"tokens": tok["tokens"]}).json() == {"prompt": text}


def test_models_version_health(chat_sim):
    models = chat_sim.http.get("/v1/models").json()
    assert [m["id"] for m in models["data"]] == ["sim-chat", "alias-chat"]
    card = models["data"][0]
    assert card["root"] == "sim-chat" and card["max_model_len"] == 512 and card["owned_by"] == "vllm"
    assert card["permission"][0]["object"] == "model_permission"
    assert [m.id for m in sdk(chat_sim).models.list()] == ["sim-chat", "alias-chat"]
    assert chat_sim.http.get("/version").json() == {"version": "0.32.0"}
    health = chat_sim.http.get("/health")
    assert health.status_code == 200 and health.content == b""


def test_embeddings_float_base64_and_inputs(embed_sim):
    r = embed_sim.post("/v1/embeddings", {"model": "sim-embed", "input": ["hello world", "other"]}).json()
    assert r["id"].startswith("embd-") and r["object"] == "list"
    vec = r["data"][0]["embedding"]
    assert len(vec) == 64 and math.isclose(sum(v * v for v in vec), 1.0, rel_tol=1e-5)
    assert r["data"][1]["embedding"] != vec and r["usage"]["prompt_tokens"] == 3
    b64 = embed_sim.post("/v1/embeddings", {"input": "hello world", "encoding_format": "base64"}).json()
    decoded = struct.unpack("<64f", base64.b64decode(b64["data"][0]["embedding"]))
    assert list(decoded) == vec  # same float32 numbers, deterministic
    ids = embed_sim.post("/v1/embeddings", {"input": [1, 2, 3]}).json()
    assert len(ids["data"]) == 1 and ids["usage"]["prompt_tokens"] == 3
    ids2 = embed_sim.post("/v1/embeddings", {"input": [[1, 2, 3], [4]]}).json()
    assert ids2["data"][0]["embedding"] == ids["data"][0]["embedding"] and len(ids2["data"]) == 2
    via_sdk = sdk(embed_sim).embeddings.create(model="sim-embed", input="hello world")
    assert [round(x, 6) for x in via_sdk.data[0].embedding] == [round(x, 6) for x in vec]


def test_embed_server_has_no_chat_route(embed_sim):
    r = embed_sim.post("/v1/chat/completions", {"messages": MSGS})
    assert r.status_code == 404 and r.json() == {"detail": "Not Found"}


def test_rerank_sorted_relevant_first_and_aliases(rerank_sim):
    docs = ["The sky is blue.", "Paris is the capital of France.", "Count to ten."]
    body = {"model": "sim-rerank", "query": "What is the capital of France?", "documents": docs}
    for path in ("/rerank", "/v1/rerank", "/v2/rerank"):
        r = rerank_sim.post(path, body).json()
        assert list(r) == ["id", "model", "usage", "results"] and r["id"].startswith("score-")
        scores = [x["relevance_score"] for x in r["results"]]
        assert scores == sorted(scores, reverse=True) and all(0 <= s <= 1 for s in scores)
        assert r["results"][0]["index"] == 1 and r["results"][0]["document"]["text"] == docs[1]
    top = rerank_sim.post("/rerank", {**body, "top_n": 2}).json()
    assert len(top["results"]) == 2 and top["usage"]["total_tokens"] == top["usage"]["prompt_tokens"] > 0


def test_score(rerank_sim):
    r = rerank_sim.post("/score", {"text_1": "capital of France", "text_2": ["Paris capital", "blue sky"]}).json()
    assert [d["index"] for d in r["data"]] == [0, 1] and r["data"][0]["score"] > r["data"][1]["score"]


@pytest.mark.parametrize("body,status,etype,param", [
    ({"model": "nope", "messages": MSGS}, 404, "NotFoundError", "model"),
    ({"max_tokens": 3}, 400, "Bad Request", "body.messages"),
    ({"model": "nope"}, 400, "Bad Request", "body.messages"),  # schema errors come before the model check
    ({"messages": MSGS, "max_tokens": 0}, 400, "BadRequestError", "max_tokens"),
    ({"messages": MSGS, "n": 0}, 400, "BadRequestError", None),
    ({"messages": MSGS, "max_tokens": "many"}, 400, "Bad Request", "body.max_tokens"),
    ({"messages": "hi"}, 400, "Bad Request", "body.messages"),
    # vLLM's "before" validators raise VLLMValidationError, which pydantic does not wrap: BadRequestError,
    # ahead of every field check (here: before the missing messages).
    ({"messages": MSGS, "stream_options": {"include_usage": True}}, 400, "BadRequestError", "stream_options"),
    ({"stream_options": {"include_usage": True}}, 400, "BadRequestError", "stream_options"),
    ({"messages": [{"role": "user", "content": "word " * 600}]}, 400, "BadRequestError", "input_tokens"),
])
def test_chat_errors(chat_sim, body, status, etype, param):
    r = chat_sim.post("/v1/chat/completions", body)
    assert r.status_code == status
    err = r.json()["error"]
    assert list(err) == ["message", "type", "param", "code"]
    assert (err["type"], err["param"], err["code"]) == (etype, param, status)


@pytest.mark.parametrize("body,message", [
    ({"max_tokens": 3}, "Either prompt or prompt_embeds must be provided and non-empty. (parameter=prompt)"),
    ({"prompt": 5, "stream_options": {"include_usage": True}},
     "Stream options can only be defined when `stream=True`. (parameter=stream_options)"),
])
def test_completions_before_validator_errors(chat_sim, body, message):
    r = chat_sim.post("/v1/completions", body)
    assert r.status_code == 400
    param = message.rsplit("=", 1)[1].rstrip(")")
    assert r.json()["error"] == {"message": message, "type": "BadRequestError", "param": param, "code": 400}


def test_transport_level_errors(chat_sim):
    bad_json = chat_sim.http.post("/v1/chat/completions", content=b'{"messages": [}',
                                  headers={"content-type": "application/json"})
    assert bad_json.status_code == 400 and bad_json.json()["error"]["param"] == "body.14"
    no_ctype = chat_sim.http.post("/v1/chat/completions", content=b"{}")
    assert no_ctype.status_code == 400 and "Unsupported Media Type" in no_ctype.json()["error"]["message"]
    assert chat_sim.http.get("/v1/nope").json() == {"detail": "Not Found"}
    assert chat_sim.http.get("/v1/chat/completions").status_code == 405
    with pytest.raises(openai.NotFoundError):
        sdk(chat_sim).chat.completions.create(model="nope", messages=MSGS)


def test_api_key_guards_v1_only(start_sim):
    sim = start_sim("--api-key", "k1", "k2")
    assert sim.http.get("/v1/models").status_code == 401
    bad = sim.http.get("/v1/models", headers={"Authorization": "Bearer nope"})
    assert bad.status_code == 401 and bad.json() == {"error": "Unauthorized"}
    for key in ("k1", "k2"):
        assert sim.http.get("/v1/models", headers={"Authorization": f"Bearer {key}"}).status_code == 200
    for path in ("/health", "/metrics", "/version"):
        assert sim.http.get(path).status_code == 200
    assert sim.post("/tokenize", {"prompt": "hi"}).status_code == 200  # not under /v1, like vLLM
    with pytest.raises(openai.AuthenticationError):
        sdk(sim, "wrong").chat.completions.create(model="sim-model", messages=MSGS)
    assert sdk(sim, "k2").chat.completions.create(model="sim-model", messages=MSGS).choices


def test_api_key_from_env(start_sim):
    sim = start_sim(env={"VLLM_API_KEY": "envkey"})
    assert sim.http.get("/v1/models").status_code == 401
    assert httpx.get(sim.url + "/v1/models", headers={"Authorization": "Bearer envkey"}).status_code == 200
