"""What a backend's failure becomes for the client: its client errors relayed, the rest user-safe.

A backend's 400 (a prompt over the model's context, a bad sampling parameter) is about the
client's request: its status, message, type and param reach the client; so does a 413. A 422
becomes a 400 invalid_request_error with its message and param: the gateway's document
(openapi.py) promises 400 for invalid requests, and OpenAI's clients expect it. Nothing else a
backend says does: its 5xx text, and 4xx answers that mean the gateway addressed it wrongly
(credentials, model name, path), become the gateway's own 502/503/504 with a fixed message
that names the backend but never its address or key.
"""

from __future__ import annotations

import re

import orjson

from .backend_http import ConnectError, ConnectTimeout, PoolTimeout, ReadTimeout
from .errors import (BackendUnavailable, BadGateway, GatewayError, NoCapacity, UpstreamError,
                     UpstreamTimeout)
from .routing import Backend

# The backend statuses that are about the client's request, and the code each gets when the
# backend's own is not a string: vLLM puts the status number in `code`, and OpenAI's clients
# expect a string or null there. The codes are the gateway's own for the same faults.
CLIENT_ERROR_CODES = {400: "invalid_request", 413: "request_too_large", 422: "invalid_request"}
_SANE_CODE = re.compile(r"[A-Za-z0-9_.\-]{1,64}")


def transport_error(exc: BaseException, backend: Backend) -> GatewayError:
    """A transport failure (no connection, silence, dropped, not HTTP) as the client sees it."""
    if isinstance(exc, ReadTimeout):
        return UpstreamTimeout(f"backend {backend.name} did not answer in time")
    if isinstance(exc, PoolTimeout):
        return NoCapacity("every backend connection of the gateway is in use; retry shortly",
                          headers={"Retry-After": "1"})
    if isinstance(exc, (ConnectError, ConnectTimeout)):
        return BackendUnavailable(f"backend {backend.name} is unreachable",
                                  headers={"Retry-After": "1"})
    return BadGateway(f"backend {backend.name} broke the connection")


def relayed_error(status: int, content: bytes, backend: Backend) -> GatewayError:
    """A backend's error answer (any status but 200) as the client sees it."""
    if status == 503:
        return BackendUnavailable(f"backend {backend.name} is not ready",
                                  headers={"Retry-After": "5"})
    if status >= 500:
        return BadGateway(f"backend {backend.name} failed with status {status}")
    if status == 401 or status == 403:
        # Our credentials were refused: the client's key is not at fault, the deployment is.
        return BadGateway(f"backend {backend.name} refused the gateway's credentials")
    if status not in CLIENT_ERROR_CODES:
        # 404, 405, ...: the gateway resolved the model and the path itself, so the backend not
        # knowing them is the deployment's fault (routing table), not the client's.
        return BadGateway(f"backend {backend.name} rejected the gateway's request ({status})")
    return _client_error(status, content)


def _client_error(status: int, content: bytes) -> UpstreamError:
    try:
        err = orjson.loads(content).get("error")
    except (orjson.JSONDecodeError, AttributeError):
        err = None
    if not isinstance(err, dict):
        err = {}

    def text(field: str, limit: int) -> str | None:
        value = err.get(field)
        return value[:limit] if isinstance(value, str) and value else None

    code = err.get("code")
    if not (isinstance(code, str) and _SANE_CODE.fullmatch(code)):
        code = CLIENT_ERROR_CODES[status]
    message = text("message", 2000) or f"the backend rejected the request ({status})"
    if status == 422:  # FastAPI's status for a schema violation; ours is 400, typed as OpenAI's
        return UpstreamError(400, message, type_="invalid_request_error",
                             param=text("param", 200), code=code)
    return UpstreamError(status, message, type_=text("type", 64) or "invalid_request_error",
                         param=text("param", 200), code=code)
