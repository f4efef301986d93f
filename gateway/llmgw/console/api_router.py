"""/dashboard: the console's page and its files, and sign-in, sign-out and who is signed in.

The page is static (static/): its script reads and changes everything through the admin and
monitoring APIs with the session cookie, so it can do nothing they cannot. Every answer here
carries a Content-Security-Policy that allows only this origin's own scripts, styles and
connections: no inline script, no other host, no framing.

Sign-in takes the admin token or a `monitor`-scoped API key in a form or JSON body (never in
the URL) and answers with an HttpOnly, Secure, SameSite=Strict cookie; the token itself is
not kept, only its digest. A sign-in from a page of another origin (its Origin header) is
refused, so no other site can sign a browser in.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import orjson

from fastapi import APIRouter, Request
from starlette.responses import FileResponse, JSONResponse, Response

from .. import admin_token
from ..deps import AuthDep, ConsoleDep, SettingsDep
from ..errors import (AdminUnauthorized, BodyTooLarge, CsrfFailed, InvalidApiKey, InvalidRequest,
                      NotFound)
from ..tenancy.apikeys import digest
from ..tenancy.records import KeyScope
from .credentials import session_of
from .sessions import COOKIE, token_digest

STATIC = Path(__file__).resolve().parent / "static"
# The page's own files; nothing else under /dashboard/assets is served.
ASSETS = {"console.js": "text/javascript", "pages.js": "text/javascript", "dom.js": "text/javascript",
          "console.css": "text/css"}
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
       "connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'")
HEADERS = {"Content-Security-Policy": CSP, "X-Frame-Options": "DENY",
           "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer",
           "Cache-Control": "no-store"}
MAX_TOKEN = 512
MAX_BODY = 4096  # a sign-in form: the token and little else

router = APIRouter(prefix="/dashboard", tags=["console"], include_in_schema=False)


@router.get("")
async def page() -> Response:
    return FileResponse(STATIC / "index.html", media_type="text/html", headers=HEADERS)


@router.get("/assets/{name}")
async def asset(name: str) -> Response:
    if name not in ASSETS:
        raise NotFound(f"no console file {name[:64]!r}")
    return FileResponse(STATIC / name, media_type=ASSETS[name], headers=HEADERS)


@router.post("/session")
async def sign_in(request: Request, auth: AuthDep, console: ConsoleDep, settings: SettingsDep) -> Response:
    _same_origin(request)
    token = await _presented_token(request)
    expected = settings.admin_token
    if admin_token.matches(token, expected):
        session_id, session = await console.open("admin", None, token_digest(token))
    else:
        try:
            principal = await auth.authenticate_key(token)
        except InvalidApiKey:
            raise AdminUnauthorized("wrong admin token or API key") from None
        principal.require(KeyScope.MONITOR)
        session_id, session = await console.open(
            "monitor", principal.org_id, digest(token))
    response = JSONResponse(session.public(), headers=HEADERS)
    response.set_cookie(COOKIE, session_id, max_age=int(console.ttl_secs), path="/",
                        secure=True, httponly=True, samesite="strict")
    return response


@router.get("/session")
async def who(request: Request, console: ConsoleDep) -> Response:
    session = await session_of(request, console)
    if session is None:
        raise AdminUnauthorized("not signed in")
    return JSONResponse(session.public(), headers=HEADERS)


@router.delete("/session")
async def sign_out(request: Request, console: ConsoleDep) -> Response:
    session = await session_of(request, console)  # CsrfFailed without its token
    if session is not None:
        await console.close(request.cookies.get(COOKIE))
    response = JSONResponse({"signed_out": True}, headers=HEADERS)
    response.delete_cookie(COOKIE, path="/", secure=True, httponly=True, samesite="strict")
    return response


def _same_origin(request: Request) -> None:
    """A browser sends Origin with every POST: it must be this host (nginx keeps Host)."""
    origin = request.headers.get("origin")
    if origin is not None and urlsplit(origin).netloc != request.headers.get("host"):
        raise CsrfFailed("sign-in from another origin")


async def _presented_token(request: Request) -> str:
    """`token` from a form or a JSON body; never a query parameter."""
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind not in ("application/x-www-form-urlencoded", "application/json"):
        raise InvalidRequest("send the token in a form or a JSON body", param="token")
    raw = b""
    async for chunk in request.stream():
        raw += chunk
        if len(raw) > MAX_BODY:
            raise BodyTooLarge(f"a sign-in body is at most {MAX_BODY} bytes")
    if kind == "application/json":
        try:
            body = orjson.loads(raw)
        except orjson.JSONDecodeError:
            raise InvalidRequest("the body is not JSON") from None
        token = body.get("token") if isinstance(body, dict) else None
    else:
        token = (parse_qs(raw.decode("utf-8", "replace")).get("token") or [None])[0]
    if not isinstance(token, str) or not 0 < len(token) <= MAX_TOKEN:
        raise InvalidRequest("token: the admin token or a monitor-scoped API key", param="token")
    return token
