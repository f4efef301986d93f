"""The admin token: where a request presents it, and a constant-time comparison."""

from __future__ import annotations

import hmac

from pydantic import SecretStr
from starlette.requests import Request

from .tenancy.apikeys import bearer_token


def presented(request: Request) -> str | None:
    """`Authorization: Bearer ...` or seed 000's `X-Admin-Token`."""
    return bearer_token(request.headers.get("authorization")) or request.headers.get("x-admin-token")


def matches(token: str | None, expected: SecretStr | None) -> bool:
    if not token or expected is None:
        return False
    return hmac.compare_digest(token.encode("utf-8", "replace"),
                               expected.get_secret_value().encode("utf-8"))
