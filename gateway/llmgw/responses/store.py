"""Stored responses of the Responses API: per organisation, in Redis, with a TTL and a size bound.

vLLM keeps responses, when it keeps them at all, in the memory of the one replica that made
them, never freed, with no notion of organisation. The gateway keeps each stored response as
its client got it, with the conversation that led to it (input items, then its output), so a
later turn (`previous_response_id`) can go to any replica with its whole history, a replica
restart loses nothing, and GET answers from here. The organisation is part of the key: another
organisation's id is simply not found.
"""

from __future__ import annotations

from dataclasses import dataclass

import orjson
from redis.asyncio import Redis

from ..keyspace import stored_response

@dataclass(frozen=True, slots=True)
class StoredResponse:
    response: dict   # as the client got it
    items: list      # the conversation through this response's output: the next turn's history


class TooLarge(Exception):
    """The conversation is over RESPONSES_MAX_BYTES: not stored."""


class ResponseStore:
    def __init__(self, redis: Redis, *, ttl_secs: int, max_bytes: int) -> None:
        self._redis, self._ttl, self._max_bytes = redis, ttl_secs, max_bytes

    async def get(self, org_id: str, response_id: str) -> StoredResponse | None:
        raw = await self._redis.get(stored_response(org_id, response_id))
        if raw is None:
            return None
        record = orjson.loads(raw)
        return StoredResponse(record["response"], record["items"])

    async def put(self, org_id: str, stored: StoredResponse) -> None:
        """Keep it for RESPONSES_TTL_SECS; TooLarge if it is over the size bound. Redis
        errors propagate: the caller says the response was not stored."""
        raw = orjson.dumps({"response": stored.response, "items": stored.items})
        if len(raw) > self._max_bytes:
            raise TooLarge(f"the conversation is {len(raw)} bytes, over RESPONSES_MAX_BYTES "
                           f"({self._max_bytes})")
        await self._redis.set(stored_response(org_id, stored.response["id"]), raw, ex=self._ttl)

    async def delete(self, org_id: str, response_id: str) -> bool:
        return bool(await self._redis.delete(stored_response(org_id, response_id)))
