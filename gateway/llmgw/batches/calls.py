"""One batch line sent through the gateway, and what its answer means for the line: a result
(for the output or the error file), a retry later (no room now, a transient failure), or a
pause of the organisation's batches (a quota spent until its reset)."""

from __future__ import annotations

import secrets
from dataclasses import dataclass

import orjson

from ..backend_http import BackendHTTP, BackendHTTPError, Origin
from .item import BATCH_ITEM_HEADER, BATCH_KEY_HEADER, BatchItem

# 503 codes that mean "not now": the gateway itself, Redis or every backend is busy or away.
_LATER_503 = {"no_spare_capacity", "no_capacity", "backend_unavailable", "limiter_busy",
              "limiter_unavailable", "state_unavailable", "draining", "preempted"}
_BUSY = {"no_spare_capacity", "no_capacity", "preempted"}  # the model's backends have no room for batch


@dataclass(frozen=True)
class Result:
    error: bool
    output: dict
    usage: tuple[int, int, int, int] = (0, 0, 0, 0)  # input, output, cached, reasoning tokens


@dataclass(frozen=True)
class Later:
    delay_ms: int
    busy: bool = False  # the model had no room: skip its lines for a while


@dataclass(frozen=True)
class Paused:
    for_ms: int


Outcome = Result | Later | Paused


def new_request_id() -> str:
    return f"batch_req_{secrets.token_hex(16)}"


@dataclass(frozen=True)
class Gateway:
    """Where the runner sends its lines (`http` keeps response headers), and how long one
    may take."""
    http: BackendHTTP
    origin: Origin
    token: str
    timeout_secs: float


async def call(gateway: Gateway, item: BatchItem, key_digest: str, url: str, custom_id: str,
               body: bytes) -> Outcome:
    headers = (f"Authorization: Bearer {gateway.token}\r\nContent-Type: application/json\r\n"
               f"{BATCH_ITEM_HEADER}: {item.header()}\r\n{BATCH_KEY_HEADER}: {key_digest}\r\n")
    try:
        resp = await gateway.http.request(
            gateway.origin, b"POST", url.encode(), headers.encode(), body,
            read_timeout=gateway.timeout_secs, answer_timeout=gateway.timeout_secs)
        try:
            content = await resp.read()
        finally:
            resp.close()
    except BackendHTTPError:
        return Later(1000)  # the gateway is restarting, or unreachable: the line waits
    return judge(resp.status, resp.headers or {}, content, custom_id)


def judge(status: int, headers, content: bytes, custom_id: str) -> Outcome:
    try:
        answer = orjson.loads(content)
    except orjson.JSONDecodeError:
        answer = {"error": {"message": content[:200].decode("utf-8", "replace"),
                            "type": "server_error", "code": None}}
    code = (answer.get("error") or {}).get("code") if isinstance(answer, dict) else None
    retry_ms = _retry_after_ms(headers)
    if status == 429 and isinstance(code, str) and code.startswith("quota_"):
        return Paused(retry_ms or 60_000)
    if status == 429 and code in ("limit_global_concurrent", "limit_concurrent"):
        # Its Retry-After is when the oldest lease would lapse; a line ends far sooner.
        return Later(250, busy=True)
    if status == 429:
        return Later(retry_ms or 500)
    if status == 503 and code in _LATER_503:
        return Later(retry_ms or 500, busy=code in _BUSY)
    line = {"id": new_request_id(), "custom_id": custom_id,
            "response": {"status_code": status, "request_id": headers.get("x-request-id"),
                         "body": answer},
            "error": None}
    return Result(status != 200, line, _usage(answer) if status == 200 else (0, 0, 0, 0))


def _retry_after_ms(headers) -> int | None:
    value = headers.get("retry-after")
    try:
        return max(100, int(float(value) * 1000)) if value else None
    except ValueError:
        return None


def _usage(answer) -> tuple[int, int, int, int]:
    usage = answer.get("usage") if isinstance(answer, dict) else None
    if not isinstance(usage, dict):
        return 0, 0, 0, 0
    given = usage.get("prompt_tokens", usage.get("input_tokens", usage.get("total_tokens")))
    made = usage.get("completion_tokens", usage.get("output_tokens"))
    cached = (usage.get("prompt_tokens_details") or usage.get("input_tokens_details") or {})
    reasoning = (usage.get("completion_tokens_details") or usage.get("output_tokens_details") or {})
    return tuple(int(x) if isinstance(x, int) else 0 for x in (
        given, made, cached.get("cached_tokens"), reasoning.get("reasoning_tokens")))
