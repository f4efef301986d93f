"""The gateway's errors in Anthropic's shape, for the routes that speak Anthropic's protocol.

Anthropic's SDKs pick the exception by the HTTP status alone, so any body would do for them;
but a client reading the body (or an error event mid-stream, which has no status of its own)
expects `{"type": "error", "error": {"type", "message"}}` with Anthropic's error types, as
vLLM answers on /v1/messages. The same GatewayError is rendered: its status and headers are
unchanged, `error.type` is Anthropic's name for the status, and the gateway's own `code`
(`limit_rpm`, `model_not_allowed`, ...) and `param` are kept beside it.
"""

from __future__ import annotations

import orjson

from ..errors import GatewayError

# Anthropic's error type per status (docs.anthropic.com, "Errors"); any other 4xx is the
# request's fault, any other 5xx the service's.
TYPES = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
         404: "not_found_error", 413: "request_too_large", 429: "rate_limit_error",
         503: "overloaded_error", 504: "timeout_error"}


def error_type(status: int) -> str:
    return TYPES.get(status) or ("invalid_request_error" if status < 500 else "api_error")


def body_bytes(error: GatewayError) -> bytes:
    return orjson.dumps({"type": "error", "error": {
        "type": error_type(error.status), "message": error.message, "code": error.code,
        "param": error.param}})


def error_event(error: GatewayError) -> bytes:
    """A stream's error event: Anthropic's SDKs raise on `event: error` (a bare `data:` event
    with an error would pass unnoticed, and the answer would look complete)."""
    return b"event: error\ndata: " + body_bytes(error) + b"\n\n"
