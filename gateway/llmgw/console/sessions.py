"""Console sessions, in Redis: a signed-in browser holds a random session id in an HttpOnly
cookie; Redis holds what it stands for under the id's SHA-256 (a copy of Redis yields no
usable cookie), with its CSRF token, until it expires or its owner signs out.

A session stands for the credential it was opened with and is checked against it on every
use: the admin token's digest (a new ADMIN_TOKEN ends every admin session), or a `monitor`
key's digest (revoking the key ends its sessions, as it ends the key).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Callable
from dataclasses import dataclass

import orjson
from redis.asyncio import Redis

from ..keyspace import CONSOLE_SESSION

COOKIE = "llmgw_console"


@dataclass(frozen=True)
class ConsoleSession:
    role: str               # "admin" or "monitor"
    org_id: str | None      # a monitor session's organisation
    credential: str         # SHA-256 of the admin token, or the monitor key's digest
    csrf: str               # sent back in X-CSRF-Token with every change
    expires_at: float

    def public(self) -> dict:
        return {"role": self.role, "org_id": self.org_id, "csrf_token": self.csrf,
                "expires_at": int(self.expires_at)}

    def csrf_ok(self, presented: str | None) -> bool:
        return presented is not None and hmac.compare_digest(presented.encode(), self.csrf.encode())


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "replace")).hexdigest()


class ConsoleSessions:
    def __init__(self, redis: Redis, *, ttl_secs: float, clock: Callable[[], float]) -> None:
        self._r, self._ttl, self._clock = redis, ttl_secs, clock

    async def open(self, role: str, org_id: str | None, credential: str) -> tuple[str, ConsoleSession]:
        """A new session: its id (the cookie's value) and what it stands for."""
        session_id = secrets.token_urlsafe(32)
        session = ConsoleSession(role, org_id, credential, secrets.token_urlsafe(24),
                                 self._clock() + self._ttl)
        await self._r.set(_key(session_id), orjson.dumps(session.__dict__),
                          px=int(self._ttl * 1000))
        return session_id, session

    async def get(self, session_id: str | None) -> ConsoleSession | None:
        if not session_id or len(session_id) > 100:
            return None
        raw = await self._r.get(_key(session_id))
        if raw is None:
            return None
        session = ConsoleSession(**orjson.loads(raw))
        return session if session.expires_at > self._clock() else None

    async def close(self, session_id: str | None) -> None:
        if session_id and len(session_id) <= 100:
            await self._r.delete(_key(session_id))

    @property
    def ttl_secs(self) -> float:
        return self._ttl


def _key(session_id: str) -> str:
    return CONSOLE_SESSION + hashlib.sha256(session_id.encode()).hexdigest()
