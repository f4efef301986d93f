"""Console sessions in a real redis-server: opened, found by their cookie's value, stored
under a digest (never the id itself), expired by the clock and by Redis, closed; CSRF tokens
compared exactly."""

from __future__ import annotations

import asyncio
import hashlib

import pytest
from redis.asyncio import Redis

from llmgw.console.sessions import ConsoleSession, ConsoleSessions, token_digest
from llmgw.keyspace import CONSOLE_SESSION


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def run(port: int, scenario):
    async def go():
        async with Redis(port=port, decode_responses=True) as redis:
            await redis.flushall()
            clock = Clock()
            return await scenario(ConsoleSessions(redis, ttl_secs=60, clock=clock), redis, clock)
    return asyncio.run(go())


def test_a_session_is_found_by_its_id_and_stored_under_its_digest(redis_port):
    async def scenario(sessions, redis, clock):
        session_id, opened = await sessions.open("monitor", "org_a", "digest-1")
        keys = await redis.keys("*")
        return session_id, opened, await sessions.get(session_id), keys, await redis.pttl(keys[0])
    session_id, opened, found, keys, ttl_ms = run(redis_port, scenario)
    assert found == opened and found.role == "monitor" and found.org_id == "org_a"
    assert found.credential == "digest-1" and found.expires_at == 1_000_060.0
    assert keys == [CONSOLE_SESSION + hashlib.sha256(session_id.encode()).hexdigest()]
    assert session_id not in keys[0]  # a copy of Redis yields no usable cookie
    assert 59_000 < ttl_ms <= 60_000
    assert found.public() == {"role": "monitor", "org_id": "org_a", "csrf_token": found.csrf,
                              "expires_at": 1_000_060}


def test_two_sessions_never_share_an_id_or_a_csrf_token(redis_port):
    async def scenario(sessions, redis, clock):
        return [await sessions.open("admin", None, "d") for _ in range(2)]
    (id1, s1), (id2, s2) = run(redis_port, scenario)
    assert id1 != id2 and s1.csrf != s2.csrf and len(id1) >= 40


def test_expired_closed_unknown_and_oversized_ids_find_nothing(redis_port):
    async def scenario(sessions, redis, clock):
        expiring, _ = await sessions.open("admin", None, "d")
        closed, _ = await sessions.open("admin", None, "d")
        kept, _ = await sessions.open("admin", None, "d")
        await sessions.close(closed)
        await sessions.close(None)        # signing out without a cookie is nothing
        await sessions.close("x" * 101)
        clock.now += 59.9
        still = await sessions.get(kept)
        clock.now += 0.2                  # past the deadline, whatever Redis still holds
        return (still, await sessions.get(expiring), await sessions.get(closed),
                await sessions.get("unknown"), await sessions.get(None), await sessions.get(""),
                await sessions.get("x" * 101), sessions.ttl_secs)
    still, expired, closed, unknown, none, empty, oversized, ttl = run(redis_port, scenario)
    assert still is not None
    assert [expired, closed, unknown, none, empty, oversized] == [None] * 6
    assert ttl == 60


@pytest.mark.parametrize("presented,ok", [("tok-123", True), ("tok-12", False), ("tok-1234", False),
                                          ("", False), (None, False), ("TOK-123", False)])
def test_csrf_tokens_must_match_exactly(presented, ok):
    assert ConsoleSession("admin", None, "d", "tok-123", 0).csrf_ok(presented) is ok


def test_token_digests_are_sha256():
    assert token_digest("secret") == hashlib.sha256(b"secret").hexdigest()
    assert token_digest("\udcff") == hashlib.sha256(b"?").hexdigest()  # unencodable: replaced, no error
