"""Embeddings, rerank and score: deterministic vectors and word-overlap relevance scores.

/pooling and /classify are in classify.py, Cohere's /v2/embed in cohere.py."""

from __future__ import annotations

import base64
import functools
import hashlib
import math
import re
import sys
import time
from array import array

import orjson

from . import generate as gen
from . import openai_shapes as shapes
from .validate import (ApiError, bad_request, check_model, check_prompt_len, get_int, get_str, invalid,
                       require_list)

_WORD_RE = re.compile(r"\w+")
_PAIR_SPECIAL_TOKENS = 3  # [CLS] query [SEP] document [SEP]


@functools.lru_cache(maxsize=4096)
def embed_vector(key: str, dim: int) -> array:
    """Unit vector from a hash of the input, rounded to float32 like a real model's output."""
    raw = hashlib.shake_256(key.encode()).digest(dim * 2)
    vals = array("h", raw)
    if sys.byteorder == "big":  # same vectors on every machine
        vals.byteswap()
    norm = math.sqrt(math.fsum(v * v for v in vals)) or 1.0
    return array("f", [v / norm for v in vals])


def relevance(query: str, doc: str) -> float:
    """Share of query words found in the document, plus a tiny hash jitter to break ties; in [0, 1]."""
    q = {w.lower() for w in _WORD_RE.findall(query)}
    d = {w.lower() for w in _WORD_RE.findall(doc)}
    overlap = len(q & d) / len(q) if q else 0.0
    h = hashlib.blake2b(f"{query}\0{doc}".encode(), digest_size=4).digest()
    jitter = int.from_bytes(h, "little") / 2**32
    return array("f", [0.9 * overlap + 0.09 * jitter])[0]


def pooled_inputs(body: dict) -> list[tuple[str, int]]:
    """(hash key, token count) per input: string(s), token ids, or chat messages."""
    if "input" not in body and "messages" in body:
        try:
            rendered = gen.render_chat(require_list(body, "messages"), False)
        except ValueError as exc:
            raise bad_request(str(exc), "messages") from None
        return [(rendered, gen.count_chat(rendered))]
    if "input" not in body:
        raise invalid("missing", "input", "Field required", body)
    inp = body["input"]
    if isinstance(inp, str):
        return [(inp, gen.count_tokens(inp))]
    if isinstance(inp, list) and inp:
        if all(isinstance(x, str) for x in inp):
            return [(x, gen.count_tokens(x)) for x in inp]
        if all(isinstance(x, int) and not isinstance(x, bool) for x in inp):
            return [("ids:" + ",".join(map(str, inp)), len(inp))]
        if all(isinstance(x, list) and all(isinstance(t, int) for t in x) for x in inp):
            return [("ids:" + ",".join(map(str, x)), len(x)) for x in inp]
    raise invalid("union_type", "input", "Input should be a valid string, a list of strings, a list of "
                  "integers or a list of lists of integers", inp)


def encoding_format(body: dict) -> str:
    fmt = get_str(body, "encoding_format") or "float"
    if fmt not in ("float", "base64"):
        raise invalid("literal_error", "encoding_format", "Input should be 'float', 'base64', 'bytes' or "
                      "'bytes_only'", fmt)
    return fmt


def check_lengths(items: list[tuple[str, int]], cfg) -> None:
    for _, count in items:
        if count > cfg.max_model_len:
            check_prompt_len(count, cfg.max_model_len)


def encode(vec: array, fmt: str):
    """A float32 vector as JSON floats, or base64 of its bytes."""
    return vec.tolist() if fmt == "float" else base64.b64encode(vec.tobytes()).decode()


def request_id(prefix: str, body: dict, headers: dict) -> str:
    return prefix + (headers.get("x-request-id") or get_str(body, "request_id") or shapes.random_id())


def embeddings(body: dict, headers: dict, cfg) -> tuple[bytes, int]:
    items = pooled_inputs(body)
    fmt = encoding_format(body)
    dims = get_int(body, "dimensions", None)
    check_model(body, cfg.served_model_names, pooling=True)
    if dims is not None and dims != cfg.embed_dim:
        raise bad_request(f'Model "{cfg.model_name}" does not support matryoshka representation, changing '
                          "output dimensions will lead to poor results.")
    check_lengths(items, cfg)
    vectors = [encode(embed_vector(key, cfg.embed_dim), fmt) for key, _ in items]
    total = sum(c for _, c in items)
    resp = shapes.embedding_response(request_id("embd-", body, headers), int(time.time()), cfg.model_name,
                                     vectors, total)
    return orjson.dumps(resp), total


def _texts(body: dict, name: str, allow_single: bool = True) -> list[str]:
    if name not in body:
        raise invalid("missing", name, "Field required", body)
    v = body[name]
    if isinstance(v, str) and allow_single:
        return [v]
    if isinstance(v, list) and all(isinstance(x, str) for x in v):
        return v
    if isinstance(v, list) or isinstance(v, dict):
        raise ApiError(400, shapes.error("Only text documents are supported by this simulator.",
                                         "BadRequestError", 400, name))
    raise invalid("string_type", name, "Input should be a valid string", v)


def rerank(body: dict, headers: dict, cfg) -> tuple[bytes, int]:
    query = get_str(body, "query", required=True)
    docs = _texts(body, "documents")
    top_n = get_int(body, "top_n", 0)
    if top_n < 0:
        raise invalid("greater_than_equal", "top_n", "Input should be greater than or equal to 0", top_n)
    check_model(body, cfg.served_model_names, pooling=True)
    qlen = gen.count_tokens(query)
    total = sum(qlen + gen.count_tokens(d) + _PAIR_SPECIAL_TOKENS for d in docs)
    results = [(i, d, relevance(query, d)) for i, d in enumerate(docs)]
    results.sort(key=lambda r: r[2], reverse=True)  # stable, like vLLM's list.sort
    if 0 < top_n < len(results):
        results = results[:top_n]
    rid = "score-" + (headers.get("x-request-id") or get_str(body, "request_id") or shapes.random_id())
    return orjson.dumps(shapes.rerank_response(rid, cfg.model_name, results, total)), total


def score(body: dict, headers: dict, cfg) -> tuple[bytes, int]:
    for left, right in (("text_1", "text_2"), ("queries", "documents"), ("data_1", "data_2"), ("queries", "items")):
        if left in body and right in body:
            break
    else:
        raise invalid("missing", "queries", "Field required", body)
    lhs, rhs = _texts(body, left), _texts(body, right)
    check_model(body, cfg.served_model_names, pooling=True)
    if len(lhs) == 1:
        lhs = lhs * len(rhs)
    if len(lhs) != len(rhs):
        raise bad_request("Queries and documents must have the same length, or queries must be a single item.")
    scores = [relevance(q, d) for q, d in zip(lhs, rhs)]
    total = sum(gen.count_tokens(q) + gen.count_tokens(d) + _PAIR_SPECIAL_TOKENS for q, d in zip(lhs, rhs))
    rid = "score-" + (headers.get("x-request-id") or get_str(body, "request_id") or shapes.random_id())
    resp = shapes.score_response(rid, int(time.time()), cfg.model_name, scores, total)
    return orjson.dumps(resp), total
