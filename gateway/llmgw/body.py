"""Reading a request body: size cap, content type, UTF-8 and JSON, each with its own clear error."""

from __future__ import annotations

import orjson
from starlette.requests import Request

from .errors import BodyTooLarge, InvalidRequest, UnsupportedMediaType

# The deepest body the gateway can serialise again, to forward it and to key the cache:
# orjson's parser takes 1024 levels but its serialiser raises past 254 (checked against
# orjson 3.13), and the cache key wraps the body in one more array. Deeper was a 500 for a
# client's mistake. No real body comes near: OpenAI's are a few levels deep, a strict JSON
# schema under 30.
MAX_JSON_DEPTH = 253
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
    _check_depth(raw, body)
    return body


def _check_depth(raw: bytes, body: dict) -> None:
    """Refuse a body nested deeper than MAX_JSON_DEPTH, without walking it in Python."""
    # A body cannot nest deeper than it has brackets: two counts in C clear nearly every body.
    if raw.count(b"[") + raw.count(b"{") <= MAX_JSON_DEPTH:
        return
    try:
        orjson.dumps([body])  # the cache key's extra level: raises past MAX_JSON_DEPTH exactly
    except orjson.JSONEncodeError:
        raise InvalidRequest(_TOO_DEEP) from None
