"""/pooling, /classify and /v2/embed on the simulator: the same numbers as /v1/embeddings,
deterministic answers with usage, and vLLM's refusals (shapes against real vLLM are in
test_sim_vs_real_captures.py)."""

from __future__ import annotations

import base64
import struct

import pytest

pytestmark = pytest.mark.timeout(20)
TEXTS = ["hello world", "the quick brown fox"]


def test_pooling_on_an_embed_server_gives_its_embeddings(embed_sim):
    pooled = embed_sim.post("/pooling", {"model": "sim-embed", "input": TEXTS}).json()
    embedded = embed_sim.post("/v1/embeddings", {"model": "sim-embed", "input": TEXTS}).json()
    assert pooled["id"].startswith("pooling-") and pooled["model"] == "sim-embed"
    assert [d["data"] for d in pooled["data"]] == [d["embedding"] for d in embedded["data"]]
    assert {d["object"] for d in pooled["data"]} == {"pooling"}
    assert pooled["usage"] == embedded["usage"] and pooled["usage"]["prompt_tokens"] > 0
    b64 = embed_sim.post("/pooling", {"input": TEXTS[0], "encoding_format": "base64"}).json()
    assert list(struct.unpack("<64f", base64.b64decode(b64["data"][0]["data"]))) == pooled["data"][0]["data"]


@pytest.mark.parametrize("body,param,message", [
    ({"input": "hi", "task": "classify"}, "task", "Unsupported task: 'classify'"),
    ({"input": "hi", "task": "token_embed"}, "task", "--pooler-config.task token_embed"),
    ({"input": "hi", "task": "nope"}, "body.task", "literal_error"),
    ({"input": "hi", "dimensions": 8}, "dimensions", "not supported"),
    ({"data": {"x": 1}}, "task", "No IOProcessor plugin"),
    ({}, "body.input", "Field required"),
])
def test_pooling_refusals(embed_sim, body, param, message):
    r = embed_sim.post("/pooling", body)
    assert r.status_code == 400 and r.json()["error"]["param"] == param and message in r.text


def test_classify_is_a_deterministic_one_label_classifier(rerank_sim):
    r = rerank_sim.post("/classify", {"model": "sim-rerank", "input": TEXTS}).json()
    assert r["id"].startswith("classify-") and r["object"] == "list" and r["model"] == "sim-rerank"
    assert [(d["index"], d["label"], d["num_classes"]) for d in r["data"]] == [(0, "LABEL_0", 1), (1, "LABEL_0", 1)]
    probs = [d["probs"][0] for d in r["data"]]
    assert all(0 < p < 1 for p in probs) and probs[0] != probs[1] and r["usage"]["prompt_tokens"] > 0
    assert rerank_sim.post("/classify", {"input": TEXTS}).json()["data"] == r["data"]
    raw = rerank_sim.post("/classify", {"input": TEXTS[0], "use_activation": False}).json()["data"][0]["probs"][0]
    assert (raw > 0) == (probs[0] > 0.5)  # the logit behind the sigmoid
    pooled = rerank_sim.post("/pooling", {"input": TEXTS}).json()  # the classify task's output
    assert [d["data"] for d in pooled["data"]] == [d["probs"] for d in r["data"]]


def test_routes_follow_the_server_kind(embed_sim, rerank_sim):
    assert embed_sim.post("/classify", {"input": "hi"}).status_code == 404
    assert rerank_sim.post("/v2/embed", {"texts": ["hi"]}).status_code == 404


def test_cohere_embed_gives_the_embeddings_by_type(embed_sim):
    r = embed_sim.post("/v2/embed", {"model": "sim-embed", "texts": TEXTS,
                                     "embedding_types": ["base64", "ubinary", "float", "binary"]}).json()
    assert list(r) == ["id", "embeddings", "texts", "meta", "response_type"] and r["texts"] == TEXTS
    assert list(r["embeddings"]) == ["float", "binary", "ubinary", "base64"]
    floats = r["embeddings"]["float"]
    embedded = embed_sim.post("/v1/embeddings", {"input": TEXTS}).json()
    assert floats == [d["embedding"] for d in embedded["data"]]
    assert r["meta"]["billed_units"] == {"input_tokens": embedded["usage"]["prompt_tokens"], "image_tokens": 0}
    first_byte = sum(1 << (7 - j) for j, v in enumerate(floats[0][:8]) if v >= 0)
    assert r["embeddings"]["ubinary"][0][0] == first_byte and r["embeddings"]["binary"][0][0] == first_byte - 128
    assert len(r["embeddings"]["ubinary"][0]) == 64 // 8
    assert list(struct.unpack("<64f", base64.b64decode(r["embeddings"]["base64"][0]))) == floats[0]
    assert list(embed_sim.post("/v2/embed", {"texts": TEXTS}).json()["embeddings"]) == ["float"]


def test_cohere_embed_truncation_and_refusals(embed_sim):
    long = "word " * 10
    cut = embed_sim.post("/v2/embed", {"texts": [long], "max_tokens": 4}).json()
    assert cut["meta"]["billed_units"]["input_tokens"] == 4
    for body, message in [({"texts": [long], "max_tokens": 4, "truncate": "NONE"}, "exceeds max_tokens=4"),
                          ({}, "Exactly one of texts"), ({"texts": []}, "Exactly one of texts"),
                          ({"texts": ["a"], "images": ["b"]}, "Exactly one of texts"),
                          ({"texts": "a"}, "valid list"), ({"texts": ["a"], "embedding_types": ["int8"]}, "'float'"),
                          ({"texts": ["a"], "output_dimension": 8}, "Matryoshka"),
                          ({"texts": ["a"], "input_type": "search_query"}, "input_type"),
                          ({"images": ["data:image/png;base64,AA=="]}, "texts only")]:
        r = embed_sim.post("/v2/embed", body)
        assert r.status_code == 400 and message in r.json()["error"]["message"], (body, r.text)
