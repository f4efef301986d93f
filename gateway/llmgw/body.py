"""Reading a request body: size cap, content type, UTF-8 and JSON, each with its own clear error."""

from __future__ import annotations

import orjson
from starlette.requests import Request

from .errors import BodyTooLarge, InvalidRequest, UnsupportedMediaType

# OpenAI bodies are shallow: a chat message's content parts sit at depth 5, and a strict JSON
# schema (at most 10 levels of nested objects, two JSON levels each) stays under 30. The cap
# must also stay well below orjson's serialiser limit (254 levels), since the gateway
# serialises the body again to forward it and to key the cache: deeper input made those raise
# (a 500 for a client's mistake).
MAX_JSON_DEPTH = 64
_TOO_DEEP = f"request body nests deeper than {MAX_JSON_DEPTH} levels of objects and arrays"


def _check_content_type(request: Request) -> None:
    content_type = request.headers.get("content-type")
    if content_type is None:
        return  # tolerated: curl -d without -H still sends a type, raw clients may send none
    media = content_type.split(";", 1)[0].strip().lower()
    if media != "application/json" and not media.endswith("+json"):
        raise UnsupportedMediaType(
            f"Content-Type must be application/json, got {media[:100]!r}")


async def read_json_object(request: Request, max_bytes: int, *, empty: dict | None = None) -> dict:
    """The body as a JSON object, reading no more than `max_bytes` from the socket.

    `empty`, when given, is what an empty body means (for routes whose body is optional)."""
    _check_content_type(request)
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > max_bytes:
        raise BodyTooLarge(f"request body exceeds {max_bytes} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > max_bytes:  # chunked uploads carry no Content-Length to check up front
            raise BodyTooLarge(f"request body exceeds {max_bytes} bytes")
        chunks.append(chunk)
    raw = b"".join(chunks)
    if not raw:
        if empty is not None:
            return empty
        raise InvalidRequest("request body is empty; expected a JSON object")
    try:
        body = orjson.loads(raw)  # orjson also rejects invalid UTF-8 and lone surrogates
    except orjson.JSONDecodeError as exc:
        if "depth limit" in str(exc):  # orjson's own parse limit (1024 levels)
            raise InvalidRequest(_TOO_DEEP) from None
        reason = "invalid UTF-8" if "utf-8" in str(exc).lower() else "not valid JSON"
        raise InvalidRequest(f"request body is {reason}: {str(exc)[:200]}") from None
    if not isinstance(body, dict):
        raise InvalidRequest("request body must be a JSON object")
    # Counting brackets runs in C and clears almost every body (brackets inside strings only
    # make it walk the parsed tree, which stops at the first branch too deep).
    if raw.count(b"[") + raw.count(b"{") > MAX_JSON_DEPTH and _deeper_than(body, MAX_JSON_DEPTH):
        raise InvalidRequest(_TOO_DEEP)
    return body


def _deeper_than(body: dict, limit: int) -> bool:
    """Whether objects and arrays nest more than `limit` levels (the body itself is level 1)."""
    pending: list[tuple[dict | list, int]] = [(body, 1)]
    while pending:
        node, depth = pending.pop()
        children = [c for c in (node.values() if isinstance(node, dict) else node)
                    if isinstance(c, (dict, list))]
        if children and depth == limit:
            return True
        pending.extend((child, depth + 1) for child in children)
    return False
