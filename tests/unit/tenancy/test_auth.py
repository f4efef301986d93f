"""Authenticating API keys against a real redis-server: the verdicts (malformed, unknown,
revoked, expired, suspended), the principal's limits and models, the cache kept only while
subscribed, and the last-known answers during an outage; after a (re)subscription, records
that do not parse are forgotten one by one, and a revalidation pass never keeps answers that
predate an invalidation or a later resubscription."""

from __future__ import annotations

import asyncio
import time

import orjson
import pytest
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError

from llmgw.errors import InvalidApiKey, PermissionDenied, StateUnavailable
from llmgw.tenancy.apikeys import digest, new_key
from llmgw.tenancy.auth import Authenticator, Principal
from llmgw.tenancy.limits import Limits
from llmgw.tenancy.records import ApiKeyRecord, Org, KeyScope
from llmgw.tenancy.store import TenancyStore, new_org_id


class _Store:
    """The real store, whose lookups can fail as in an outage, or pause once after fetching
    (so a test can change things between the read and the use of its answers)."""

    def __init__(self, store: TenancyStore) -> None:
        self.real = store
        self.down = False
        self.calls = 0
        self.hold: asyncio.Event | None = None
        self.fetched = asyncio.Event()

    async def lookup(self, key_digest: str):
        if self.down:
            raise RedisConnectionError("redis is down")
        return await self.real.lookup(key_digest)

    async def lookup_many(self, digests: list[str]):
        self.calls += 1
        if self.down:
            raise RedisConnectionError("redis is down")
        found = await self.real.lookup_many(digests)
        if self.hold is not None:
            hold, self.hold = self.hold, None
            self.fetched.set()
            await hold.wait()
        return found


async def _org_with_keys(store: TenancyStore, n: int) -> tuple[Org, list[tuple[str, ApiKeyRecord]]]:
    now = time.time()
    org = Org(id=new_org_id(), name=f"org-{time.monotonic_ns()}", created_at=now, updated_at=now)
    await store.create_org(org)
    keys = []
    for _ in range(n):
        key_id, raw = new_key()
        record = ApiKeyRecord(key_id=key_id, org_id=org.id, scopes=[KeyScope.CHAT], created_at=now,
                              digest=digest(raw))
        await store.add_key(record)
        keys.append((raw, record))
    return org, keys


async def _revoke(store: TenancyStore, record: ApiKeyRecord) -> None:
    await store.save_key(record.model_copy(update={"status": "revoked"}))


async def _outcome(auth: Authenticator, raw: str) -> str:
    try:
        await auth.authenticate(f"Bearer {raw}")
    except InvalidApiKey:
        return "invalid"
    except StateUnavailable:
        return "unknown"
    return "ok"


def _run(port: int, n_keys: int, scenario):
    async def main():
        redis = Redis(port=port, decode_responses=True)
        try:
            store = _Store(TenancyStore(redis, time.time))
            org, keys = await _org_with_keys(store.real, n_keys)
            auth = Authenticator(store, Limits(), clock=time.time, cache_ttl=0)
            auth.subscribed()
            assert [await _outcome(auth, raw) for raw, _ in keys] == ["ok"] * n_keys  # now known
            return await scenario(redis, store, auth, org, keys)
        finally:
            await redis.aclose()
    return asyncio.run(main())


def test_lookup_many_parses_each_record_on_its_own(redis_port):
    async def scenario(redis, store, _auth, org, keys):
        await redis.set(f"llmgw:key:{{{org.id}}}:{keys[1][1].key_id}", "{not json")
        newer = keys[2][1].stored() | {"status": "paused"}  # as a newer version might write
        await redis.set(f"llmgw:key:{{{org.id}}}:{keys[2][1].key_id}", orjson.dumps(newer))
        found = await store.real.lookup_many([digest(raw) for raw, _ in keys] + ["0" * 64])
        assert [f is not None for f in found] == [True, False, False, True, False]
        assert found[3][0].key_id == keys[3][1].key_id and found[3][1].id == org.id
    _run(redis_port, 4, scenario)


def test_a_record_that_does_not_parse_is_forgotten_and_its_batch_still_revalidated(redis_port):
    """Invalidations were missed (no subscription): after resubscribing, a revoked key whose
    batch also holds a corrupt record must not be served from the last answers in the next
    outage; the corrupt one is forgotten, the others keep working."""
    n = 2 * Authenticator.REVALIDATE_BATCH + 10

    async def scenario(redis, store, auth, org, keys):
        await redis.set(f"llmgw:key:{{{org.id}}}:{keys[3][1].key_id}", "{not json")
        for i in (7, n - 2):  # in the corrupt record's batch, and in the last one
            await _revoke(store.real, keys[i][1])
        await auth.revalidate(auth.subscribed())
        store.down = True
        outcomes = [await _outcome(auth, raw) for raw, _ in keys]
        assert outcomes[3] == "unknown" and outcomes[7] == outcomes[n - 2] == "invalid"
        assert outcomes.count("ok") == n - 3
    _run(redis_port, n, scenario)


def test_answers_fetched_before_an_invalidation_are_fetched_again(redis_port):
    """The batch was read with the key active, then it was revoked and the invalidation
    arrived: the pass asks again rather than remember what it read."""
    async def scenario(redis, store, auth, org, keys):
        hold = asyncio.Event()
        store.hold = hold
        revalidation = asyncio.ensure_future(auth.revalidate(auth.subscribed(), retry_secs=0.01))
        await store.fetched.wait()
        await _revoke(store.real, keys[0][1])
        auth.invalidated(org.id)
        hold.set()
        await asyncio.wait_for(revalidation, 5)
        assert store.calls == 2  # the batch was asked again, after the invalidation
        store.down = True
        assert await _outcome(auth, keys[0][0]) == "invalid"
        assert await _outcome(auth, keys[1][0]) == "ok"
    _run(redis_port, 2, scenario)


def test_a_pass_overtaken_by_a_resubscription_keeps_none_of_its_answers(redis_port):
    """The old pass read the key as active, then it was revoked and a resubscription's pass
    recorded that: the old pass, resuming, must not put the active answer back."""
    async def scenario(_redis, store, auth, _org, keys):
        hold = asyncio.Event()
        store.hold = hold
        old = asyncio.ensure_future(auth.revalidate(auth.subscribed(), retry_secs=0.01))
        await store.fetched.wait()
        await _revoke(store.real, keys[0][1])
        await asyncio.wait_for(auth.revalidate(auth.subscribed()), 5)
        hold.set()
        await asyncio.wait_for(old, 5)
        assert store.calls == 2  # the old pass ended instead of asking again
        store.down = True
        assert await _outcome(auth, keys[0][0]) == "invalid"
        assert await _outcome(auth, keys[1][0]) == "ok"
    _run(redis_port, 2, scenario)


@pytest.mark.parametrize("event", ["resubscribed", "unsubscribed"])
def test_a_pass_waiting_for_redis_ends_with_its_subscription(redis_port, event):
    async def scenario(_redis, store, auth, _org, keys):
        store.down = True
        old = asyncio.ensure_future(auth.revalidate(auth.subscribed(), retry_secs=0.01))
        await asyncio.sleep(0.1)
        assert not old.done() and store.calls > 1  # retrying: the last answers stand meanwhile
        assert await _outcome(auth, keys[0][0]) == "ok"
        auth.subscribed() if event == "resubscribed" else auth.unsubscribed()
        await asyncio.wait_for(old, 1)
    _run(redis_port, 2, scenario)


# ---- verdicts, principals, the cache and the last-known answers ----

class _Counting(_Store):
    def __init__(self, store: TenancyStore) -> None:
        super().__init__(store)
        self.lookups = 0

    async def lookup(self, key_digest: str):
        self.lookups += 1
        await asyncio.sleep(0.01)  # a round trip: concurrent callers overlap
        return await super().lookup(key_digest)


def _auth_run(port: int, scenario, *, cache_ttl: float = 60, defaults: Limits = Limits()):
    async def main():
        redis = Redis(port=port, decode_responses=True)
        try:
            store = _Counting(TenancyStore(redis, time.time))
            org, keys = await _org_with_keys(store.real, 2)
            auth = Authenticator(store, defaults, clock=time.time, cache_ttl=cache_ttl)
            return await scenario(store, auth, org, keys)
        finally:
            await redis.aclose()
    return asyncio.run(main())


def test_a_malformed_or_missing_key_is_refused_without_asking_redis(redis_port):
    async def scenario(store, auth, org, keys):
        store.down = True  # a lookup would answer 503, not 401
        for header in (None, "", "Basic abc", "Bearer sk-short", "Bearer " + keys[0][0] + "x"):
            with pytest.raises(InvalidApiKey):
                await auth.authenticate(header)
        with pytest.raises(InvalidApiKey):
            await auth.authenticate_key(None)
        return store.lookups
    assert _auth_run(redis_port, scenario) == 0


def test_unknown_revoked_expired_and_suspended_keys(redis_port):
    async def scenario(store, auth, org, keys):
        _, unknown = new_key()
        with pytest.raises(InvalidApiKey):
            await auth.authenticate(f"Bearer {unknown}")
        await _revoke(store.real, keys[0][1])
        with pytest.raises(InvalidApiKey):
            await auth.authenticate(f"Bearer {keys[0][0]}")
        await store.real.save_key(keys[1][1].model_copy(update={"expires_at": time.time() - 1}))
        with pytest.raises(InvalidApiKey, match="expired"):
            await auth.authenticate(f"Bearer {keys[1][0]}")
        await store.real.save_key(keys[1][1].model_copy(update={"expires_at": time.time() + 60}))
        assert (await auth.authenticate(f"Bearer {keys[1][0]}")).key_id == keys[1][1].key_id
        await store.real.save_org(org.model_copy(update={"status": "suspended"}))
        with pytest.raises(PermissionDenied) as suspended:
            await auth.authenticate(f"Bearer {keys[1][0]}")
        return suspended.value
    suspended = _auth_run(redis_port, scenario, cache_ttl=0)
    assert suspended.code == "org_suspended" and suspended.status == 403


def test_the_principal_carries_the_limits_in_force_scopes_and_models(redis_port):
    async def scenario(store, auth, org, keys):
        await store.real.save_org(org.model_copy(update={
            "limits": Limits(rpm_limit=100, tpm_limit=1000), "timezone": "Asia/Tokyo",
            "models": ["Qwen/*"]}))
        raw, record = keys[0]
        await store.real.save_key(record.model_copy(update={
            "limits": Limits(rpm_limit=10), "models": ["*-0.6B"]}))
        by_header = await auth.authenticate(f"Bearer {raw}")
        by_digest = await auth.authenticate_digest(digest(raw))
        return org, record, by_header, by_digest
    org, record, who, again = _auth_run(redis_port, scenario, cache_ttl=0,
                                        defaults=Limits(max_concurrent=3, rpm_limit=50))
    assert who == again
    assert (who.org_id, who.org_name, who.key_id, who.timezone) == (org.id, org.name, record.key_id,
                                                                    "Asia/Tokyo")
    assert who.org_limits == Limits(rpm_limit=100, tpm_limit=1000, max_concurrent=3)
    assert who.key_limits == Limits(rpm_limit=10)
    assert who.limits == Limits(rpm_limit=10, tpm_limit=1000, max_concurrent=3)
    assert who.restricted and who.may_use(["Qwen/Qwen3-0.6B"])
    assert not who.may_use(["Qwen/Qwen3-8B"]) and not who.may_use(["other-0.6B"])
    who.require(KeyScope.CHAT)
    with pytest.raises(PermissionDenied, match="batch"):
        who.require(KeyScope.BATCH)


def test_principal_without_model_lists_may_use_every_model():
    who = Principal("org", "Org", "k", frozenset(), Limits(), Limits(), Limits())
    assert not who.restricted and who.may_use(["anything"])


def test_lookups_are_cached_only_while_subscribed_and_dropped_by_an_invalidation(redis_port):
    async def scenario(store, auth, org, keys):
        raw, record = keys[0]
        header = f"Bearer {raw}"
        await auth.authenticate(header)
        await auth.authenticate(header)
        uncached = store.lookups  # not subscribed: every call asks Redis
        auth.subscribed()
        await auth.authenticate(header)
        await _revoke(store.real, record)  # published, but nobody listens here
        cached = await auth.authenticate(header)  # still the cached answer
        auth.invalidated(org.id)  # what the listener does with the message
        with pytest.raises(InvalidApiKey):
            await auth.authenticate(header)
        auth.unsubscribed()
        before = store.lookups
        with pytest.raises(InvalidApiKey):
            await auth.authenticate(header)
        return uncached, cached, store.lookups - before
    uncached, cached, after_unsubscribe = _auth_run(redis_port, scenario)
    assert uncached == 2 and cached.key_id and after_unsubscribe == 1


def test_a_burst_for_an_uncached_key_makes_one_lookup(redis_port):
    async def scenario(store, auth, org, keys):
        auth.subscribed()
        who = await asyncio.gather(*[auth.authenticate(f"Bearer {keys[0][0]}") for _ in range(20)])
        return store.lookups, who
    lookups, who = _auth_run(redis_port, scenario)
    assert lookups == 1 and len({w.key_id for w in who}) == 1


def test_in_an_outage_known_keys_are_served_from_their_last_answer_unknown_ones_get_503(redis_port):
    async def scenario(store, auth, org, keys):
        await auth.authenticate(f"Bearer {keys[0][0]}")
        await _revoke(store.real, keys[1][1])
        with pytest.raises(InvalidApiKey):
            await auth.authenticate(f"Bearer {keys[1][0]}")  # known: as revoked
        store.down = True
        served = await auth.authenticate(f"Bearer {keys[0][0]}")
        with pytest.raises(InvalidApiKey):
            await auth.authenticate(f"Bearer {keys[1][0]}")
        _, unknown = new_key()
        with pytest.raises(StateUnavailable):
            await auth.authenticate(f"Bearer {unknown}")
        auth.invalidated(org.id)  # its answers go: nothing to serve them from now
        with pytest.raises(StateUnavailable):
            await auth.authenticate(f"Bearer {keys[0][0]}")
        return served
    assert _auth_run(redis_port, scenario, cache_ttl=0).key_id
