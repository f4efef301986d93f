"""Cohere's embed API (/v2/embed) as vLLM 0.32 serves it on an embedding model: the same
vectors as /v1/embeddings, by type (float, binary, ubinary, base64), and the tokens billed.

Text only: images and mixed inputs need a multimodal model and its chat template (vLLM renders
them through it), which no simulated model has.
"""

from __future__ import annotations

import base64
import struct
from array import array

import orjson

from . import generate as gen
from .pooling import embed_vector, request_id
from .validate import bad_request, check_model, check_prompt_len, get_int, get_str, invalid

TYPES = ("float", "binary", "ubinary", "base64")  # the answer's order, whatever the request's
TRUNCATE = ("NONE", "START", "END")


def _texts(body: dict) -> list[str]:
    given = [body.get(k) for k in ("texts", "images", "inputs") if body.get(k) is not None]
    if len(given) != 1 or not given[0]:
        msg = "Exactly one of texts, images, or inputs must be provided, and it must be non-empty"
        raise invalid("value_error", "", "Value error, " + msg, body)
    texts = body.get("texts")
    if texts is None:
        raise bad_request("The simulator embeds texts only (no images or mixed inputs).")
    if not isinstance(texts, list):
        raise invalid("list_type", "texts", "Input should be a valid list", texts)
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise invalid("string_type", f"texts.{i}", "Input should be a valid string", text)
    return texts


def _types(body: dict) -> list[str]:
    asked = body.get("embedding_types") or ["float"]
    if not isinstance(asked, list):
        raise invalid("list_type", "embedding_types", "Input should be a valid list", asked)
    for i, kind in enumerate(asked):
        if kind not in TYPES:
            raise invalid("literal_error", f"embedding_types.{i}",
                          "Input should be 'float', 'binary', 'ubinary' or 'base64'", kind)
    return [t for t in TYPES if t in asked]


def _tokens(text: str, truncate: str, max_tokens: int | None, cfg) -> int:
    """The tokens embedded: truncated to max_tokens (or the context) unless truncate is NONE,
    which refuses a longer input instead."""
    count = gen.count_tokens(text)
    if truncate != "NONE":
        return min(count, max_tokens or cfg.max_model_len)
    check_prompt_len(count, cfg.max_model_len)
    if max_tokens is not None and count > max_tokens:
        raise bad_request(f"Input of {count} tokens exceeds max_tokens={max_tokens} with truncate=NONE. "
                          "Set truncate to END or START to allow truncation.")
    return count


def _packed(vec: array, signed: bool) -> list[int]:
    """Sign bits, eight to a byte, most significant first (numpy's packbits); binary is offset by 128."""
    out = []
    for start in range(0, len(vec), 8):
        byte = sum(1 << (7 - j) for j, v in enumerate(vec[start:start + 8]) if v >= 0)
        out.append(byte - 128 if signed else byte)
    return out


def _by_type(vectors: list[array], kind: str):
    if kind == "float":
        return [v.tolist() for v in vectors]
    if kind == "base64":
        return [base64.b64encode(struct.pack(f"<{len(v)}f", *v)).decode() for v in vectors]
    return [_packed(v, signed=kind == "binary") for v in vectors]


def embed(body: dict, headers: dict, cfg) -> tuple[bytes, int]:
    texts = _texts(body)
    types = _types(body)
    truncate = get_str(body, "truncate") or "END"
    if truncate not in TRUNCATE:
        raise invalid("literal_error", "truncate", "Input should be 'NONE', 'START' or 'END'", truncate)
    max_tokens = get_int(body, "max_tokens", None)
    dims = get_int(body, "output_dimension", None)
    check_model(body, cfg.served_model_names, pooling=True)
    if body.get("input_type") is not None:
        raise bad_request(f"Unsupported input_type {body['input_type']!r}. "
                          "This model does not define any input_type task instructions.")
    if dims is not None:
        raise bad_request(f"Model {cfg.model_name!r} does not support Matryoshka embeddings; "
                          f"dimensions must be unset (received dimensions={dims}).")
    if {"binary", "ubinary"} & set(types) and cfg.embed_dim % 8:
        raise bad_request("Embedding dimension must be a multiple of 8 for binary embedding types, "
                          f"but got {cfg.embed_dim}.")
    counts = [_tokens(t, truncate, max_tokens, cfg) for t in texts]
    vectors = [embed_vector(t if n == gen.count_tokens(t) else f"{t}\0{truncate}{n}", cfg.embed_dim)
               for t, n in zip(texts, counts)]
    total = sum(counts)
    resp = {"id": request_id("embd-", body, headers),
            "embeddings": {kind: _by_type(vectors, kind) for kind in types}, "texts": texts,
            "meta": {"api_version": {"version": "2"}, "billed_units": {"input_tokens": total, "image_tokens": 0}},
            "response_type": "embeddings_by_type"}
    return orjson.dumps(resp), total
