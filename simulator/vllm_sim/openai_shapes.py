"""Response bodies with vLLM 0.32's exact keys, key order and nulls (dicts ready for orjson)."""

from __future__ import annotations

import random

import orjson

_getrandbits = random.SystemRandom().getrandbits


def random_id() -> str:
    """vLLM's random_uuid(): 16 hex characters."""
    return "%016x" % _getrandbits(64)


# ---- errors -----------------------------------------------------------------
def error(message: str, err_type: str, code: int, param: str | None = None) -> bytes:
    return orjson.dumps({"error": {"message": message, "type": err_type, "param": param, "code": code}})


def _summarize(value) -> str:
    # Mirrors vLLM's _summarize_error_input: containers are described, not echoed.
    if isinstance(value, (list, tuple, dict)):
        return f"<{type(value).__name__} of {len(value)} items>"
    text = value if isinstance(value, str) else str(value)
    return text if len(text) <= 200 else text[:200] + "...[truncated]"


def validation_error(kind: str, loc: tuple, msg: str, value, param: str | None = None) -> bytes:
    """FastAPI RequestValidationError as vLLM renders it: 400, type 'Bad Request'."""
    return validation_errors([(kind, loc, msg, value, None)], param)


def validation_errors(entries: list, param: str | None = None) -> bytes:
    """Several pydantic errors (kind, loc, msg, input, ctx-or-None) in one 400, as vLLM lists them.

    param defaults to the first error's location, like vLLM's handler, which also reports at most
    10 errors of at most 1000 characters each.
    """
    lines = []
    for kind, loc, msg, value, ctx in entries[:10]:
        entry = {"type": kind, "loc": ".".join(str(p) for p in loc), "msg": msg, "input": _summarize(value)}
        if ctx is not None:
            entry["ctx"] = ctx
        text = repr(entry)
        lines.append("  " + (text if len(text) <= 1000 else text[:1000] + "...[truncated]"))
    label = "error" if len(entries) == 1 else "errors"
    if len(entries) > 10:
        lines.append(f"  ...and {len(entries) - 10} more {label}")
    first = ".".join(str(p) for p in entries[0][1])
    return error(f"{len(entries)} validation {label}:\n" + "\n".join(lines), "Bad Request", 400, param or first)


def media_type_error() -> bytes:
    return error("1 validation error:\n  Unsupported Media Type: Only 'application/json' is allowed",
                 "Bad Request", 400, None)


def json_error(pos: int, reason: str) -> bytes:
    entry = {"type": "json_invalid", "loc": f"body.{pos}", "msg": "JSON decode error",
             "input": "<dict of 0 items>", "ctx": {"error": reason}}
    return error(f"1 validation error:\n  {entry!r}", "Bad Request", 400, f"body.{pos}")


# ---- usage ------------------------------------------------------------------
def usage(prompt: int, completion: int | None = 0) -> dict:
    """UsageInfo.model_dump(): every field, nulls included."""
    return {"prompt_tokens": prompt, "total_tokens": prompt + (completion or 0), "completion_tokens": completion,
            "prompt_tokens_details": None, "completion_tokens_details": None}


def usage_set(prompt: int, completion: int) -> dict:
    """UsageInfo dumped with exclude_unset/exclude_none, as in streamed usage."""
    return {"prompt_tokens": prompt, "total_tokens": prompt + completion, "completion_tokens": completion}


# ---- chat -------------------------------------------------------------------
def chat_message(content: str | None, tool_calls: list | None = None) -> dict:
    """ChatMessage.model_dump(): tool_calls only when there are some (vLLM's serializer drops [])."""
    msg = {"role": "assistant", "content": content, "refusal": None, "annotations": None, "audio": None,
           "function_call": None}
    if tool_calls:
        msg["tool_calls"] = tool_calls
    msg["reasoning"] = None
    return msg


def chat_response(rid: str, created: int, model: str, gens: list, prompt_tokens: int,
                  fingerprint: str, token_ids: bool, prompt_ids: list | None, lps: list,
                  answers: list | None = None) -> dict:
    """answers[i]: (content, tool_calls, finish_reason) of a tool-calling choice, None for plain text."""
    choices = []
    for i, g in enumerate(gens):
        answer = answers[i] if answers else None
        content, calls, finish = answer or (g.text, None, g.finish_reason)
        choices.append({"index": i, "message": chat_message(content, calls), "logprobs": lps[i],
                        "finish_reason": finish, "stop_reason": None,
                        "token_ids": g.ids() if token_ids else None, "routed_experts": None})
    completion = sum(len(g.pieces) for g in gens)
    return {"id": rid, "object": "chat.completion", "created": created, "model": model, "choices": choices,
            "service_tier": None, "system_fingerprint": fingerprint, "usage": usage(prompt_tokens, completion),
            "prompt_logprobs": None, "prompt_token_ids": prompt_ids, "prompt_text": None,
            "kv_transfer_params": None, "ec_transfer_params": None, "metrics": None}


def usage_chunk_extra(chunk: dict, use: dict | None, fingerprint: str | None) -> dict:
    """Optional chunk fields in model field order: usage, then system_fingerprint."""
    if use is not None:
        chunk["usage"] = use
    if fingerprint is not None:
        chunk["system_fingerprint"] = fingerprint
    return chunk


def chat_role_chunk(head: dict, index: int, prompt_ids: list | None, use: dict | None) -> dict:
    chunk = {**head, "choices": [{"index": index, "delta": {"role": "assistant", "content": ""},
                                  "logprobs": None, "finish_reason": None}]}
    usage_chunk_extra(chunk, use, None)
    chunk["prompt_token_ids"] = prompt_ids
    chunk["prompt_text"] = None
    return chunk


def chat_token_chunk(head: dict, index: int, piece: str, finish: str | None, tid: list | None,
                     use: dict | None, fingerprint: str | None, lp: dict | None) -> dict:
    return chat_delta_chunk(head, index, {"content": piece}, finish, tid, use, fingerprint, lp)


def chat_delta_chunk(head: dict, index: int, delta: dict, finish: str | None, tid: list | None,
                     use: dict | None, fingerprint: str | None, lp: dict | None) -> dict:
    """One choice's chunk for any DeltaMessage (content, tool-call deltas, or {} on a bare finish)."""
    choice = {"index": index, "delta": delta, "logprobs": lp, "finish_reason": finish}
    if finish is not None:
        choice["stop_reason"] = None
    choice["token_ids"] = tid
    return usage_chunk_extra({**head, "choices": [choice]}, use, fingerprint)


_CHAT_TAIL = b'},"logprobs":null,"finish_reason":null,"token_ids":null}]}\n\n'
_TEXT_TAIL = b',"logprobs":null,"finish_reason":null,"stop_reason":null,"prompt_token_ids":null,"token_ids":null}]}\n\n'


class PlainTokenEvents:
    """Byte template for the common mid-stream token event (no logprobs, usage or token ids).

    Produces exactly the bytes of _sse(chat_token_chunk(...)) / _sse(completion_chunk(...)) for
    that case, several times cheaper, since streams are mostly made of these events.
    """

    def __init__(self, head: dict, chat: bool):
        self.pre = b"data: " + orjson.dumps(head)[:-1] + b',"choices":[{"index":'
        self.mid = b',"delta":{"content":' if chat else b',"text":'
        self.tail = _CHAT_TAIL if chat else _TEXT_TAIL

    def event(self, index: int, piece: str) -> bytes:
        return b"%s%d%s%s%s" % (self.pre, index, self.mid, orjson.dumps(piece), self.tail)


def chat_continuous_usage(prompt: int, completion: int) -> dict:
    # vLLM passes completion_tokens_details explicitly, so exclude_unset keeps it (as null).
    return {"prompt_tokens": prompt, "total_tokens": prompt + completion, "completion_tokens": completion,
            "completion_tokens_details": None}


def final_usage_chunk(head: dict, prompt: int, completion: int, fingerprint: str) -> dict:
    return {**head, "choices": [], "usage": usage_set(prompt, completion), "system_fingerprint": fingerprint}


# ---- completions ------------------------------------------------------------
def completion_response(rid: str, created: int, model: str, gens: list, prompt_tokens: int,
                        fingerprint: str, token_ids: bool, prompt_ids: list | None, lps: list) -> dict:
    choices = [{
        "index": i, "text": g.text, "logprobs": lps[i], "finish_reason": g.finish_reason, "stop_reason": None,
        "token_ids": g.ids() if token_ids else None, "prompt_logprobs": None,
        "prompt_token_ids": prompt_ids[i] if token_ids else None, "routed_experts": None,
    } for i, g in enumerate(gens)]
    completion = sum(len(g.pieces) for g in gens)
    return {"id": rid, "object": "text_completion", "created": created, "model": model, "choices": choices,
            "service_tier": None, "system_fingerprint": fingerprint, "usage": usage(prompt_tokens, completion),
            "kv_transfer_params": None, "ec_transfer_params": None, "metrics": None}


def completion_chunk(head: dict, index: int, piece: str, finish: str | None, prompt_ids: list | None,
                     tid: list | None, use: dict | None, fingerprint: str | None, lp: dict | None) -> dict:
    chunk = {**head, "choices": [{"index": index, "text": piece, "logprobs": lp, "finish_reason": finish,
                                  "stop_reason": None, "prompt_token_ids": prompt_ids, "token_ids": tid}]}
    return usage_chunk_extra(chunk, use, fingerprint)


# ---- pooling ----------------------------------------------------------------
def embedding_response(rid: str, created: int, model: str, vectors: list, prompt_tokens: int) -> dict:
    data = [{"index": i, "object": "embedding", "embedding": v} for i, v in enumerate(vectors)]
    return {"id": rid, "object": "list", "created": created, "model": model, "data": data,
            "usage": usage(prompt_tokens)}


def rerank_response(rid: str, model: str, results: list, prompt_tokens: int) -> dict:
    return {"id": rid, "model": model, "usage": {"prompt_tokens": prompt_tokens, "total_tokens": prompt_tokens},
            "results": [{"index": i, "document": {"text": doc, "multi_modal": None}, "relevance_score": s}
                        for i, doc, s in results]}


def score_response(rid: str, created: int, model: str, scores: list, prompt_tokens: int) -> dict:
    data = [{"index": i, "object": "score", "score": s} for i, s in enumerate(scores)]
    return {"id": rid, "object": "list", "created": created, "model": model, "data": data,
            "usage": usage(prompt_tokens)}


# ---- misc -------------------------------------------------------------------
def models_response(names, root: str, max_model_len: int, created: int, adapters=()) -> dict:
    """The base models, then each LoRA adapter (id, root, parent): no max_model_len of its own."""
    def card(name, root, parent, max_model_len):
        perm = {"id": f"modelperm-{random_id()}", "object": "model_permission", "created": created,
                "allow_create_engine": False, "allow_sampling": True, "allow_logprobs": True,
                "allow_search_indices": False, "allow_view": True, "allow_fine_tuning": False,
                "organization": "*", "group": None, "is_blocking": False}
        return {"id": name, "object": "model", "created": created, "owned_by": "vllm", "root": root,
                "parent": parent, "max_model_len": max_model_len, "permission": [perm]}
    return {"object": "list", "data": [card(n, root, None, max_model_len) for n in names] +
            [card(name, path, parent, None) for name, path, parent in adapters]}


def tokenize_response(ids: list, max_model_len: int, strs: list | None) -> dict:
    return {"count": len(ids), "max_model_len": max_model_len, "tokens": ids, "token_strs": strs}
