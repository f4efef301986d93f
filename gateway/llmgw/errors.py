"""The gateway's exception tree and the OpenAI error shape every failure is answered with.

GatewayError
├── InvalidRequest          400 invalid_request_error (bad JSON, schema violations)
│   └── ModelNotSupported   400 model used on an endpoint it does not serve
├── BodyTooLarge            413
├── HeadersTooLarge         431 headers_too_large (answered by the HTTP protocol, not the app)
├── RequestTimeout          408 request_timeout: the request arrived too slowly (likewise)
├── ClientClosedRequest     499 the client left before its body arrived (never sent; logged)
├── UnsupportedMediaType    415
├── ModelNotFound           404 model_not_found
├── RouteNotFound           404 / 405 for unknown paths and methods
├── UpstreamError           a backend's 4xx about the request (status, message, type, param relayed)
├── InvalidApiKey           401 invalid_api_key (missing, malformed, unknown, expired, revoked)
├── PermissionDenied        403 insufficient_scope, org_suspended
├── AdminUnauthorized       401 unauthorized (admin token missing or wrong)
├── CsrfFailed              403 csrf_failed: a console session's change without its CSRF token
├── AdminUnavailable        503 admin_unavailable (ADMIN_TOKEN not set)
├── NotFound                404 an admin route's unknown id
├── Conflict                409 a duplicate name
├── StateUnavailable        503 Redis did not answer in time
│   ├── LimiterUnavailable  503 limiter_unavailable (Redis down, fail-closed policy)
│   └── LimiterBusy         503 limiter_busy (Redis answers, too slowly for this admission)
├── RateLimited             429 limit_* and quota_* codes, with Retry-After
├── StorageQuotaExceeded    429 file_storage_quota_exceeded: delete files first (no Retry-After)
├── BadInput                400 bad_input: a request no waiting could admit
├── BackendUnavailable      503 no backend could be reached
│   ├── NoCapacity          503 no_capacity: every backend busy for QUEUE_TIMEOUT_SECS
│   ├── NoSpareCapacity     503 no_spare_capacity: a batch line, while realtime needs the room
│   └── Preempted           503 preempted: a running batch line stopped to make room for realtime
├── BadGateway              502 a backend broke the protocol or the connection
└── UpstreamTimeout         504 a backend did not answer in time

Only these reach users; anything else becomes a bare 500 "internal_error" with no detail.
"""

from __future__ import annotations

import orjson


class GatewayError(Exception):
    status: int = 500
    type: str = "server_error"
    code: str | None = "internal_error"

    def __init__(self, message: str, *, param: str | None = None, code: str | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        if code is not None:
            self.code = code
        self.headers = headers or {}

    def body(self) -> dict:
        return {"error": {"message": self.message, "type": self.type,
                          "param": self.param, "code": self.code}}

    def body_bytes(self) -> bytes:
        return orjson.dumps(self.body())


class InvalidRequest(GatewayError):
    status = 400
    type = "invalid_request_error"
    code = "invalid_request"


class ModelNotSupported(InvalidRequest):
    code = "model_not_supported"


class BodyTooLarge(GatewayError):
    """Answered with `Connection: close`, whether or not the body came in full (as nginx): its
    client may still be sending it, and nothing more on that connection is worth reading."""
    status = 413
    type = "invalid_request_error"
    code = "request_too_large"

    def __init__(self, message: str, **kwargs) -> None:
        super().__init__(message, headers={"Connection": "close"}, **kwargs)


class HeadersTooLarge(GatewayError):
    status = 431
    type = "invalid_request_error"
    code = "headers_too_large"


class RequestTimeout(GatewayError):
    status = 408
    type = "invalid_request_error"
    code = "request_timeout"


class ClientClosedRequest(GatewayError):
    """nginx's 499: what the access line and metrics record; the client is not there to read it."""
    status = 499
    type = "invalid_request_error"
    code = "client_closed_request"


class UnsupportedMediaType(GatewayError):
    status = 415
    type = "invalid_request_error"
    code = "unsupported_media_type"


class ModelNotFound(GatewayError):
    status = 404
    type = "invalid_request_error"
    code = "model_not_found"


class RouteNotFound(GatewayError):
    type = "invalid_request_error"
    code = "not_found"

    def __init__(self, message: str, *, status: int = 404, **kw) -> None:
        super().__init__(message, **kw)
        self.status = status
        if status == 405:
            self.code = "method_not_allowed"


class UpstreamError(GatewayError):
    """A backend's own client error (a 4xx about the request), relayed with its status but
    only whitelisted fields (backend_errors.py)."""

    def __init__(self, status: int, message: str, *, type_: str, param: str | None,
                 code: str | None) -> None:
        super().__init__(message, param=param)
        self.status = status
        self.type = type_
        self.code = code  # None stays null: a client's error is never "internal_error"


class InvalidApiKey(GatewayError):
    status = 401
    type = "invalid_request_error"
    code = "invalid_api_key"

    def __init__(self, message: str = "Invalid API key: send 'Authorization: Bearer sk-...' "
                 "with an active key.") -> None:
        super().__init__(message, headers={"WWW-Authenticate": "Bearer"})


class PermissionDenied(GatewayError):
    status = 403
    type = "permission_error"
    code = "insufficient_scope"


class ModelNotAllowed(PermissionDenied):
    """The key may not use the model it named; said alike whether or not that model exists."""
    code = "model_not_allowed"


class AdminUnauthorized(GatewayError):
    status = 401
    type = "unauthorized"
    code = "unauthorized"


class CsrfFailed(GatewayError):
    status = 403
    type = "permission_error"
    code = "csrf_failed"


class AdminUnavailable(GatewayError):
    status = 503
    type = "admin_unavailable"
    code = "admin_unavailable"


class NotFound(GatewayError):
    status = 404
    type = "invalid_request_error"
    code = "not_found"


class Conflict(GatewayError):
    status = 409
    type = "invalid_request_error"
    code = "conflict"


class StateUnavailable(GatewayError):
    status = 503
    type = "server_error"
    code = "state_unavailable"

    def __init__(self, message: str = "the gateway's state store is not answering; retry shortly") -> None:
        super().__init__(message, headers={"Retry-After": "1"})


class LimiterUnavailable(StateUnavailable):
    code = "limiter_unavailable"


class LimiterBusy(StateUnavailable):
    """Redis answers, but so many admissions are queued that this one's turn did not come in
    time: refused, since admitting it without Redis could bend a limit."""
    code = "limiter_busy"


# error.type per refusal code: seed 000's names where it defines them.
_LIMIT_TYPES = {"limit_concurrent": "limit_concurrent", "limit_global_concurrent": "limit_concurrent",
                "limit_rpm": "limit_rpm", "limit_tpm": "limit_tpm", "limit_rps": "rate_limit_exceeded",
                "quota_daily_tokens": "quota_exceeded", "quota_daily_requests": "quota_exceeded",
                "quota_monthly_tokens": "quota_exceeded"}


class BadInput(GatewayError):
    """A request that can never pass, whatever the counters say (seed 000's bad_input)."""
    status = 400
    type = "bad_input"
    code = "bad_input"


class RateLimited(GatewayError):
    status = 429

    def __init__(self, code: str, retry_after_secs: int, headers: dict[str, str]) -> None:
        what = code.replace("limit_", "").replace("quota_", "").replace("_", " ")
        super().__init__(f"rate limit reached ({what}); retry after {retry_after_secs} s",
                         code=code, headers={**headers, "Retry-After": str(retry_after_secs)})
        self.type = _LIMIT_TYPES.get(code, "rate_limit_exceeded")


class StorageQuotaExceeded(GatewayError):
    """The organisation's stored files would exceed FILES_ORG_MAX_BYTES: waiting does not
    help, deleting files does, so no Retry-After."""
    status = 429
    type = "insufficient_quota"
    code = "file_storage_quota_exceeded"


class BackendUnavailable(GatewayError):
    status = 503
    type = "server_error"
    code = "backend_unavailable"


class NoCapacity(BackendUnavailable):
    code = "no_capacity"


class NoSpareCapacity(BackendUnavailable):
    """A batch line refused at once: no backend of its model has room realtime does not need."""
    code = "no_spare_capacity"

    def __init__(self, model: str) -> None:
        super().__init__(f"no spare capacity for batch work on '{model}' now",
                         headers={"Retry-After": "1"})


class Preempted(BackendUnavailable):
    """A batch line aborted mid-way: its backend filled up with realtime requests."""
    code = "preempted"

    def __init__(self, backend: str) -> None:
        super().__init__(f"batch line preempted on {backend}: realtime requests needed the room",
                         headers={"Retry-After": "1"})


class BadGateway(GatewayError):
    status = 502
    type = "server_error"
    code = "bad_gateway"


class UpstreamTimeout(GatewayError):
    status = 504
    type = "server_error"
    code = "upstream_timeout"


INTERNAL_ERROR_BODY = GatewayError("internal error").body_bytes()
