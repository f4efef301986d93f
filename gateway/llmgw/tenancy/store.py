"""Organisations and API keys in Redis: the layout, and every read and write of it.

Layout (hash tags keep an organisation's keys in one Redis Cluster slot):
  llmgw:org:{ORG}             JSON of the organisation
  llmgw:key:{ORG}:KID         JSON of one API key (with its digest)
  llmgw:orgkeys:{ORG}         SET of the organisation's key ids
  llmgw:orgnames              HASH name -> org id (names are unique)
  llmgw:orgs                  ZSET org id by creation time (for paging)
  llmgw:keydigest:DIGEST      "ORG KID" for lookup by the SHA-256 of a presented key
  llmgw:keyids                HASH key id -> org id (admin routes address keys by id)
"""

from __future__ import annotations

import secrets
from collections.abc import Callable

import orjson
from redis.asyncio import Redis

from ..admission.redis_channel import RedisChannel
from .records import ApiKeyRecord, Org

INVALIDATE_CHANNEL = "llmgw:auth-invalidate"


def _org_key(org_id: str) -> str:
    return f"llmgw:org:{{{org_id}}}"


def _api_key_key(org_id: str, key_id: str) -> str:
    return f"llmgw:key:{{{org_id}}}:{key_id}"


def _org_keys_key(org_id: str) -> str:
    return f"llmgw:orgkeys:{{{org_id}}}"


def _digest_key(digest: str) -> str:
    return f"llmgw:keydigest:{digest}"


NAMES, ORGS, KEY_IDS = "llmgw:orgnames", "llmgw:orgs", "llmgw:keyids"


def new_org_id() -> str:
    return "org_" + secrets.token_hex(8)


class NameTaken(Exception):
    pass


def _parsed(raw_key: str | bytes | None, raw_org: str | bytes | None) -> tuple[ApiKeyRecord, Org] | None:
    if raw_key is None or raw_org is None:
        return None
    try:
        return ApiKeyRecord.model_validate_json(raw_key), Org.model_validate_json(raw_org)
    except ValueError:  # pydantic's ValidationError, and orjson's decode error, are ValueErrors
        return None


class TenancyStore:
    def __init__(self, redis: Redis, clock: Callable[[], float],
                 channel: RedisChannel | None = None) -> None:
        self._r = redis
        self._clock = clock
        # The request path's key lookups go over the admission's channel when given: its
        # time limit counts Redis's silence, not the wait behind a burst's other calls, so a
        # flood of new connections is not taken for Redis being down.
        self._channel = channel

    # ---- organisations ----
    async def create_org(self, org: Org) -> None:
        if not await self._r.hsetnx(NAMES, org.name, org.id):
            raise NameTaken(org.name)
        async with self._r.pipeline(transaction=False) as pipe:
            pipe.set(_org_key(org.id), org.model_dump_json())
            pipe.zadd(ORGS, {org.id: org.created_at})
            await pipe.execute()

    async def get_org(self, org_id: str) -> Org | None:
        raw = await self._r.get(_org_key(org_id))
        return Org.model_validate_json(raw) if raw else None

    async def save_org(self, org: Org) -> None:
        await self._r.set(_org_key(org.id), org.model_dump_json())
        await self.invalidate(org.id)

    async def list_orgs(self, offset: int, limit: int) -> tuple[list[Org], int]:
        ids = await self._r.zrange(ORGS, offset, offset + limit - 1)
        total = await self._r.zcard(ORGS)
        raws = await self._r.mget([_org_key(i) for i in ids]) if ids else []
        return [Org.model_validate_json(r) for r in raws if r], total

    async def delete_org(self, org: Org) -> list[str]:
        """Remove the organisation and every key of it; returns the removed key ids."""
        key_ids = sorted(await self._r.smembers(_org_keys_key(org.id)))
        keys = await self._get_keys(org.id, key_ids)
        async with self._r.pipeline(transaction=False) as pipe:
            for key in keys:
                pipe.delete(_digest_key(key.digest))
                pipe.hdel(KEY_IDS, key.key_id)
                pipe.delete(_api_key_key(org.id, key.key_id))
            pipe.delete(_org_keys_key(org.id), _org_key(org.id))
            pipe.zrem(ORGS, org.id)
            pipe.hdel(NAMES, org.name)
            await pipe.execute()
        await self.invalidate(org.id)
        return key_ids

    # ---- API keys ----
    async def add_key(self, key: ApiKeyRecord) -> None:
        async with self._r.pipeline(transaction=False) as pipe:
            pipe.set(_api_key_key(key.org_id, key.key_id), orjson.dumps(key.stored()))
            pipe.sadd(_org_keys_key(key.org_id), key.key_id)
            pipe.set(_digest_key(key.digest), f"{key.org_id} {key.key_id}")
            pipe.hset(KEY_IDS, key.key_id, key.org_id)
            await pipe.execute()

    async def save_key(self, key: ApiKeyRecord) -> None:
        await self._r.set(_api_key_key(key.org_id, key.key_id), orjson.dumps(key.stored()))
        await self.invalidate(key.org_id)

    async def get_key(self, key_id: str) -> ApiKeyRecord | None:
        org_id = await self._r.hget(KEY_IDS, key_id)
        if org_id is None:
            return None
        raw = await self._r.get(_api_key_key(org_id, key_id))
        return ApiKeyRecord.model_validate_json(raw) if raw else None

    async def list_keys(self, org_id: str) -> list[ApiKeyRecord]:
        key_ids = sorted(await self._r.smembers(_org_keys_key(org_id)))
        return await self._get_keys(org_id, key_ids)

    async def _get_keys(self, org_id: str, key_ids: list[str]) -> list[ApiKeyRecord]:
        if not key_ids:
            return []
        raws = await self._r.mget([_api_key_key(org_id, k) for k in key_ids])
        return sorted((ApiKeyRecord.model_validate_json(r) for r in raws if r),
                      key=lambda k: k.created_at)

    async def lookup(self, digest: str) -> tuple[ApiKeyRecord, Org] | None:
        """The key with this digest and its organisation (two round trips, one slot for the
        second); None if either is missing or does not parse, as `lookup_many`."""
        if self._channel is None:
            ref = await self._r.get(_digest_key(digest))
        else:
            ref = await self._channel.send(("GET", _digest_key(digest)))
        if ref is None:
            return None
        org_id, _, key_id = (ref.decode() if isinstance(ref, bytes) else ref).partition(" ")
        keys = (_api_key_key(org_id, key_id), _org_key(org_id))
        if self._channel is None:
            return _parsed(*await self._r.mget(keys))
        return _parsed(*await self._channel.send(("MGET", *keys)))

    async def lookup_many(self, digests: list[str]) -> list[tuple[ApiKeyRecord, Org] | None]:
        """`lookup` for many digests in two pipelined round trips (one GET or MGET per key,
        so a Redis Cluster can split them by slot). Each record is parsed on its own: one that
        does not parse (corrupt, or written by a newer version) is None, as if missing, so the
        caller forgets that key alone and still takes the answers for the others."""
        async with self._r.pipeline(transaction=False) as pipe:
            for d in digests:
                pipe.get(_digest_key(d))
            refs = await pipe.execute()
        found = [ref.partition(" ") for ref in refs if ref is not None]
        async with self._r.pipeline(transaction=False) as pipe:
            for org_id, _, key_id in found:
                pipe.mget([_api_key_key(org_id, key_id), _org_key(org_id)])
            raws = iter(await pipe.execute() if found else [])
        return [_parsed(*next(raws)) if ref is not None else None for ref in refs]

    async def invalidate(self, org_id: str) -> None:
        """Tell every worker and replica to drop cached lookups (revocations apply at once)."""
        await self._r.publish(INVALIDATE_CHANNEL, org_id)
