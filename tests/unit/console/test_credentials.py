"""What a console session lets a request do: changes only with the session's CSRF token, the
admin API only for an admin session opened with the admin token in force now."""

from __future__ import annotations

import asyncio

import pytest
from pydantic import SecretStr
from redis.asyncio import Redis
from starlette.requests import Request

from llmgw.console.credentials import is_admin, session_of
from llmgw.console.sessions import COOKIE, ConsoleSession, ConsoleSessions, token_digest
from llmgw.errors import CsrfFailed


def _request(method: str, cookie: str | None, csrf: str | None = None) -> Request:
    headers = []
    if cookie is not None:
        headers.append((b"cookie", f"{COOKIE}={cookie}".encode()))
    if csrf is not None:
        headers.append((b"x-csrf-token", csrf.encode()))
    return Request({"type": "http", "method": method, "path": "/admin/orgs", "headers": headers,
                    "query_string": b""})


def _judge(port: int, method: str, cookie: str | None, csrf: str | None):
    """session_of for a request carrying a live session's cookie ("live"), or the given value."""
    async def go():
        async with Redis(port=port, decode_responses=True) as redis:
            sessions = ConsoleSessions(redis, ttl_secs=60, clock=lambda: 0.0)
            session_id, session = await sessions.open("admin", None, token_digest("t"))
            value = session_id if cookie == "live" else cookie
            token = session.csrf if csrf == "right" else csrf
            try:
                return await session_of(_request(method, value, token), sessions), session
            except CsrfFailed as exc:
                return exc, session
    return asyncio.run(go())


@pytest.mark.parametrize("method", ["GET", "HEAD", "OPTIONS"])
def test_reads_need_no_csrf_token(redis_port, method):
    found, session = _judge(redis_port, method, "live", None)
    assert found == session


@pytest.mark.parametrize("method", ["POST", "PATCH", "DELETE"])
def test_changes_need_the_sessions_csrf_token(redis_port, method):
    found, session = _judge(redis_port, method, "live", "right")
    assert found == session
    for wrong in (None, "wrong"):
        refused, _ = _judge(redis_port, method, "live", wrong)
        assert isinstance(refused, CsrfFailed)


@pytest.mark.parametrize("cookie", [None, "no-such-session"])
def test_without_a_live_session_there_is_none_and_no_csrf_check(redis_port, cookie):
    found, _ = _judge(redis_port, "POST", cookie, None)
    assert found is None


def test_admin_only_with_an_admin_session_of_the_token_in_force():
    admin = ConsoleSession("admin", None, token_digest("token-now"), "c", 0)
    assert is_admin(admin, SecretStr("token-now"))
    assert not is_admin(admin, SecretStr("token-rotated"))  # a new ADMIN_TOKEN ends it
    assert not is_admin(admin, None)
    assert not is_admin(None, SecretStr("token-now"))
    monitor = ConsoleSession("monitor", "org_a", token_digest("token-now"), "c", 0)
    assert not is_admin(monitor, SecretStr("token-now"))
