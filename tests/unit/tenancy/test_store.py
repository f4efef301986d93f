"""Organisations and API keys in a real redis-server: create, read, list, save, delete, the
lookups by digest (over redis-py and over the request path's channel), and invalidations."""

from __future__ import annotations

import asyncio
import time

import pytest
from redis.asyncio import Redis

from llmgw import keyspace
from llmgw.admission.redis_channel import RedisChannel
from llmgw.tenancy.apikeys import digest, new_key
from llmgw.tenancy.records import ApiKeyRecord, KeyScope, Org
from llmgw.tenancy.store import NameTaken, TenancyStore, new_org_id


def _org(name: str, created_at: float | None = None) -> Org:
    now = created_at or time.time()
    return Org(id=new_org_id(), name=name, created_at=now, updated_at=now)


def _key(org: Org, created_at: float) -> tuple[str, ApiKeyRecord]:
    key_id, raw = new_key()
    return raw, ApiKeyRecord(key_id=key_id, org_id=org.id, scopes=[KeyScope.CHAT],
                             created_at=created_at, digest=digest(raw))


def _run(port: int, scenario, channel: bool = False):
    async def main():
        redis = Redis(port=port, decode_responses=True)
        chan = RedisChannel(f"redis://127.0.0.1:{port}/0", 2.0) if channel else None
        try:
            return await scenario(TenancyStore(redis, time.time, chan), redis)
        finally:
            if chan is not None:
                await chan.aclose()
            await redis.aclose()
    return asyncio.run(main())


def test_new_org_ids_are_prefixed_and_unique():
    ids = {new_org_id() for _ in range(100)}
    assert len(ids) == 100 and all(i.startswith("org_") and len(i) == 20 for i in ids)


def test_an_org_is_created_once_per_name_and_read_back(redis_port):
    async def scenario(store, redis):
        org = _org(f"acme-{time.monotonic_ns()}")
        await store.create_org(org)
        with pytest.raises(NameTaken):
            await store.create_org(_org(org.name))
        return org, await store.get_org(org.id), await store.get_org("org_missing")
    org, read, missing = _run(redis_port, scenario)
    assert read == org and missing is None


def test_orgs_are_listed_by_creation_time_with_the_total(redis_port):
    async def scenario(store, redis):
        await redis.flushdb()
        orgs = [_org(f"list-{i}", created_at=1000.0 + i) for i in (2, 0, 1)]
        for org in orgs:
            await store.create_org(org)
        return orgs, await store.list_orgs(0, 2), await store.list_orgs(2, 10), await store.list_orgs(5, 10)
    orgs, first, rest, beyond = _run(redis_port, scenario)
    assert [o.name for o in first[0]] == ["list-0", "list-1"] and first[1] == 3
    assert [o.name for o in rest[0]] == ["list-2"] and beyond == ([], 3)


def test_keys_are_added_listed_by_age_found_by_id_and_digest_and_saved(redis_port):
    async def scenario(store, redis):
        org = _org(f"keys-{time.monotonic_ns()}")
        await store.create_org(org)
        (raw_new, newer), (raw_old, older) = _key(org, 2000.0), _key(org, 1000.0)
        for key in (newer, older):
            await store.add_key(key)
        listed = await store.list_keys(org.id)
        by_id = await store.get_key(older.key_id)
        found = await store.lookup(digest(raw_new))
        await store.save_key(newer.model_copy(update={"status": "revoked"}))
        after = await store.lookup(digest(raw_new))
        return org, older, newer, listed, by_id, found, after, await store.get_key("0" * 16), \
            await store.lookup("0" * 64)
    org, older, newer, listed, by_id, found, after, no_key, no_digest = _run(redis_port, scenario)
    assert [k.key_id for k in listed] == [older.key_id, newer.key_id]
    assert by_id == older and by_id.digest == older.digest  # the digest is stored with it
    assert found == (newer, org)
    assert after[0].status == "revoked" and no_key is None and no_digest is None


def test_lookups_over_the_request_paths_channel_read_the_same(redis_port):
    async def scenario(store, redis):
        org = _org(f"chan-{time.monotonic_ns()}")
        await store.create_org(org)
        raw, key = _key(org, 1.0)
        await store.add_key(key)
        return org, key, await store.lookup(digest(raw)), await store.lookup("f" * 64)
    org, key, found, missing = _run(redis_port, scenario, channel=True)
    assert found == (key, org) and missing is None


def test_a_record_that_does_not_parse_is_looked_up_as_missing(redis_port):
    async def scenario(store, redis):
        org = _org(f"bad-{time.monotonic_ns()}")
        await store.create_org(org)
        raw, key = _key(org, 1.0)
        await store.add_key(key)
        await redis.set(keyspace.org(org.id), "{not json")
        return await store.lookup(digest(raw)), await store.lookup_many([digest(raw), "0" * 64])
    one, many = _run(redis_port, scenario)
    assert one is None and many == [None, None]


def test_deleting_an_org_removes_its_keys_and_every_index(redis_port):
    async def scenario(store, redis):
        org = _org(f"gone-{time.monotonic_ns()}")
        await store.create_org(org)
        keys = [_key(org, float(i)) for i in range(2)]
        for _, key in keys:
            await store.add_key(key)
        removed = await store.delete_org(org)
        left = await redis.keys(f"*{org.id}*")
        names = await redis.hget(keyspace.ORG_NAMES, org.name)
        ids = [await redis.hget(keyspace.KEY_IDS, k.key_id) for _, k in keys]
        digests = [await redis.get(keyspace.key_digest(k.digest)) for _, k in keys]
        ranked = await redis.zscore(keyspace.ORGS, org.id)
        await store.create_org(_org(org.name))  # the name is free again
        return keys, removed, left, names, ids, digests, ranked
    keys, removed, left, names, ids, digests, ranked = _run(redis_port, scenario)
    assert removed == sorted(k.key_id for _, k in keys)
    assert left == [] and names is None and ids == [None, None] and digests == [None, None]
    assert ranked is None


def test_changes_publish_an_invalidation_for_their_organisation(redis_port):
    async def scenario(store, redis):
        org = _org(f"inv-{time.monotonic_ns()}")
        await store.create_org(org)
        _, key = _key(org, 1.0)
        await store.add_key(key)
        async with redis.pubsub() as pubsub:
            await pubsub.subscribe(keyspace.INVALIDATE_CHANNEL)
            await pubsub.get_message(timeout=1)  # the subscription's confirmation
            await store.save_org(org.model_copy(update={"status": "suspended"}))
            await store.save_key(key.model_copy(update={"status": "revoked"}))
            await store.delete_org(org)
            got = []
            while len(got) < 3:
                message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1)
                assert message is not None
                got.append(message["data"])
        return org, got
    org, got = _run(redis_port, scenario)
    assert got == [org.id] * 3
