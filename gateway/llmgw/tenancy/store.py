"""Organisations and API keys in Redis: every read and write of them (keyspace.py names the
keys: one JSON record per organisation and per key, the organisation's key-id set, and the
indexes by name, creation time, key id and key digest)."""

from __future__ import annotations

import secrets
from collections.abc import Callable

import orjson
from redis.asyncio import Redis

from ..admission.redis_channel import RedisChannel
from .. import keyspace
from .records import ApiKeyRecord, Org



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
        if not await self._r.hsetnx(keyspace.ORG_NAMES, org.name, org.id):
            raise NameTaken(org.name)
        async with self._r.pipeline(transaction=False) as pipe:
            pipe.set(keyspace.org(org.id), org.model_dump_json())
            pipe.zadd(keyspace.ORGS, {org.id: org.created_at})
            await pipe.execute()

    async def get_org(self, org_id: str) -> Org | None:
        raw = await self._r.get(keyspace.org(org_id))
        return Org.model_validate_json(raw) if raw else None

    async def save_org(self, org: Org) -> None:
        await self._r.set(keyspace.org(org.id), org.model_dump_json())
        await self.invalidate(org.id)

    async def list_orgs(self, offset: int, limit: int) -> tuple[list[Org], int]:
        ids = await self._r.zrange(keyspace.ORGS, offset, offset + limit - 1)
        total = await self._r.zcard(keyspace.ORGS)
        # One GET each, pipelined: one MGET would span slots, which a Redis Cluster refuses.
        async with self._r.pipeline(transaction=False) as pipe:
            for org_id in ids:
                pipe.get(keyspace.org(org_id))
            raws = await pipe.execute() if ids else []
        return [Org.model_validate_json(r) for r in raws if r], total

    async def delete_org(self, org: Org) -> list[str]:
        """Remove the organisation and every key of it; returns the removed key ids."""
        key_ids = sorted(await self._r.smembers(keyspace.org_keys(org.id)))
        keys = await self._get_keys(org.id, key_ids)
        async with self._r.pipeline(transaction=False) as pipe:
            for key in keys:
                pipe.delete(keyspace.key_digest(key.digest))
                pipe.hdel(keyspace.KEY_IDS, key.key_id)
                pipe.delete(keyspace.api_key(org.id, key.key_id))
            pipe.delete(keyspace.org_keys(org.id), keyspace.org(org.id))
            pipe.zrem(keyspace.ORGS, org.id)
            pipe.hdel(keyspace.ORG_NAMES, org.name)
            await pipe.execute()
        await self.invalidate(org.id)
        return key_ids

    # ---- API keys ----
    async def add_key(self, key: ApiKeyRecord) -> None:
        async with self._r.pipeline(transaction=False) as pipe:
            pipe.set(keyspace.api_key(key.org_id, key.key_id), orjson.dumps(key.stored()))
            pipe.sadd(keyspace.org_keys(key.org_id), key.key_id)
            pipe.set(keyspace.key_digest(key.digest), f"{key.org_id} {key.key_id}")
            pipe.hset(keyspace.KEY_IDS, key.key_id, key.org_id)
            await pipe.execute()

    async def save_key(self, key: ApiKeyRecord) -> None:
        await self._r.set(keyspace.api_key(key.org_id, key.key_id), orjson.dumps(key.stored()))
        await self.invalidate(key.org_id)

    async def get_key(self, key_id: str) -> ApiKeyRecord | None:
        org_id = await self._r.hget(keyspace.KEY_IDS, key_id)
        if org_id is None:
            return None
        raw = await self._r.get(keyspace.api_key(org_id, key_id))
        return ApiKeyRecord.model_validate_json(raw) if raw else None

    async def list_keys(self, org_id: str) -> list[ApiKeyRecord]:
        key_ids = sorted(await self._r.smembers(keyspace.org_keys(org_id)))
        return await self._get_keys(org_id, key_ids)

    async def _get_keys(self, org_id: str, key_ids: list[str]) -> list[ApiKeyRecord]:
        if not key_ids:
            return []
        raws = await self._r.mget([keyspace.api_key(org_id, k) for k in key_ids])
        return sorted((ApiKeyRecord.model_validate_json(r) for r in raws if r),
                      key=lambda k: k.created_at)

    async def lookup(self, digest: str) -> tuple[ApiKeyRecord, Org] | None:
        """The key with this digest and its organisation (two round trips, one slot for the
        second); None if either is missing or does not parse, as `lookup_many`."""
        if self._channel is None:
            ref = await self._r.get(keyspace.key_digest(digest))
        else:
            ref = await self._channel.send(("GET", keyspace.key_digest(digest)))
        if ref is None:
            return None
        org_id, _, key_id = (ref.decode() if isinstance(ref, bytes) else ref).partition(" ")
        keys = (keyspace.api_key(org_id, key_id), keyspace.org(org_id))
        if self._channel is None:
            return _parsed(*await self._r.mget(keys))
        return _parsed(*await self._channel.send(("MGET", *keys)))

    async def lookup_many(self, digests: list[str]) -> list[tuple[ApiKeyRecord, Org] | None]:
        """`lookup` for many digests in two pipelined round trips of GETs (a Redis Cluster splits
        a pipeline by slot, but refuses MGET in one). Each record is parsed on its own: one that
        does not parse (corrupt, or written by a newer version) is None, as if missing, so the
        caller forgets that key alone and still takes the answers for the others."""
        async with self._r.pipeline(transaction=False) as pipe:
            for d in digests:
                pipe.get(keyspace.key_digest(d))
            refs = await pipe.execute()
        found = [ref.partition(" ") for ref in refs if ref is not None]
        async with self._r.pipeline(transaction=False) as pipe:
            for org_id, _, key_id in found:
                pipe.get(keyspace.api_key(org_id, key_id))
                pipe.get(keyspace.org(org_id))
            raws = iter(await pipe.execute() if found else [])
        return [_parsed(next(raws), next(raws)) if ref is not None else None for ref in refs]

    async def invalidate(self, org_id: str) -> None:
        """Tell every worker and replica to drop cached lookups (revocations apply at once)."""
        await self._r.publish(keyspace.INVALIDATE_CHANNEL, org_id)
