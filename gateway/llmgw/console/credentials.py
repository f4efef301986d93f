"""What a console session lets a request do: the admin API for an admin session, the
monitoring routes for either kind; every change (a method other than GET, HEAD, OPTIONS)
only with the session's CSRF token in X-CSRF-Token. A request that presents a token in its
headers is judged by that token alone, never by a cookie it also carries."""

from __future__ import annotations

from pydantic import SecretStr
from starlette.requests import Request

from ..errors import CsrfFailed
from .sessions import COOKIE, ConsoleSession, ConsoleSessions, token_digest

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
CSRF_HEADER = "x-csrf-token"


async def session_of(request: Request, sessions: ConsoleSessions) -> ConsoleSession | None:
    """The console session the request's cookie names, checked for CSRF if it changes
    anything (CsrfFailed); None without a live one."""
    session = await sessions.get(request.cookies.get(COOKIE))
    if session is not None and request.method not in SAFE_METHODS \
            and not session.csrf_ok(request.headers.get(CSRF_HEADER)):
        raise CsrfFailed("this change needs the console session's CSRF token (X-CSRF-Token)")
    return session


def is_admin(session: ConsoleSession | None, admin_token: SecretStr | None) -> bool:
    """An admin session opened with the admin token in force now."""
    return (session is not None and session.role == "admin" and admin_token is not None
            and session.credential == token_digest(admin_token.get_secret_value()))
