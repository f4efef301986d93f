"""Correlation ids: the client's X-Request-ID when it is sane, else the gateway's; always echoed."""

from __future__ import annotations

import re
import uuid

from .secret_shape import holds_piece, letters_and_digits, mixed_case, pieces

_SAFE_ID = re.compile(rb"^[A-Za-z0-9._:-]{1,128}$")
_KEY_ID_DIGITS = b"0123456789abcdef"


def new_request_id() -> str:
    return uuid.uuid4().hex


def secret_shaped(value: bytes) -> bool:
    """Whether a client's id looks like a credential: this platform's key (`sk-<16 hex>-...`)
    anywhere, anyone's `sk-...` key at the start of a word, or a JWT (`eyJ`, base64 of `{"`).

    Such an id would be forwarded to vLLM as X-Request-ID, which logs it unmasked. Substring
    checks only, so the common id costs two scans in C; `task-1` or `risk-2` stay accepted.
    """
    if b"eyJ" in value:
        return True
    at = value.find(b"sk-")
    while at != -1:
        word_start = not value[at - 1:at].isalnum()  # also at 0: the empty slice is not alnum
        key_id = value[at + 3:at + 19]
        ours = (len(key_id) == 16 and not key_id.strip(_KEY_ID_DIGITS)
                and value[at + 19:at + 20] == b"-")
        if word_start or ours:
            return True
        at = value.find(b"sk-", at + 3)
    return False


class RequestIdMiddleware:
    """Pure ASGI middleware (no BaseHTTPMiddleware: it buffers and breaks streaming).

    The id lands in `scope["state"]["request_id"]` for handlers and on every response,
    error responses included. A client value that is long, odd or shaped like a credential is
    replaced, because it flows into logs and backend headers.
    """

    def __init__(self, app, secrets: tuple[str, ...] = ()) -> None:
        self.app = app
        # The deployment's own secrets (admin token, backend key) are refused as ids too, whole
        # or any 16 characters of them: the gateway's logs mask them, but the backend would log
        # the id as it came.
        self._secrets = tuple(s.encode() for s in secrets if s)
        self._pieces = frozenset().union(*(pieces(s) for s in secrets if s))

    def _acceptable(self, value: bytes) -> bool:
        """A client's id is kept only if sane, not credential-shaped, holding no secret."""
        if not _SAFE_ID.match(value) or secret_shaped(value):
            return False
        if any(secret in value for secret in self._secrets):
            return False
        text = letters_and_digits(value)
        # mixed case: the random part of any key (or any base64url secret), even cut in pieces
        return not mixed_case(text) and not holds_piece(text, self._pieces)

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = None
        for name, value in scope["headers"]:
            if name == b"x-request-id":
                if self._acceptable(value):
                    request_id = value.decode("ascii")
                break
        if request_id is None:
            request_id = new_request_id()
        scope.setdefault("state", {})["request_id"] = request_id
        header = (b"x-request-id", request_id.encode("ascii"))

        async def send_with_id(message) -> None:
            if message["type"] == "http.response.start":
                # Set, never appended: an error handler may have set it already (it must, for
                # the errors Starlette answers outside every middleware), and two copies are
                # one header too many for clients and proxies that read a single value. ASGI
                # header names are lowercase already: no .lower() per header per response.
                message["headers"] = [*(h for h in message.get("headers", ())
                                        if h[0] != b"x-request-id"), header]
            await send(message)

        await self.app(scope, receive, send_with_id)
