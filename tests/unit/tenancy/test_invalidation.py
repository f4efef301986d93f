"""The invalidation listener against a real redis-server that stops answering (SIGSTOP): the
subscription is taken as lost when no PONG comes back, so caching stops until Redis
confirms a new subscription, and the known keys are revalidated then."""

from __future__ import annotations

import asyncio
import signal
import time

import pytest
from redis.asyncio import Redis

from llmgw.tenancy.apikeys import digest, new_key
from llmgw.tenancy.auth import Authenticator
from llmgw.tenancy.invalidation import listen_for_invalidations
from llmgw.tenancy.limits import Limits
from llmgw.tenancy.records import ApiKeyRecord, Org, KeyScope
from llmgw.tenancy.store import TenancyStore, new_org_id
from redis_server import start_redis

PING_EVERY, PONG_WITHIN = 0.2, 0.3


@pytest.fixture
def redis_proc():
    proc, port = start_redis()  # its own: the test freezes it
    yield proc, port
    proc.send_signal(signal.SIGCONT)
    proc.terminate()
    proc.wait()


class _CountingStore(TenancyStore):
    """Counts revalidation batches: with one known key, one per (re)subscription."""
    passes = 0

    async def lookup_many(self, digests):
        self.passes += 1
        return await super().lookup_many(digests)


async def _known_key(store: TenancyStore, auth: Authenticator) -> str:
    now = time.time()
    org = Org(id=new_org_id(), name="acme", created_at=now, updated_at=now)
    await store.create_org(org)
    key_id, raw = new_key()
    await store.add_key(ApiKeyRecord(key_id=key_id, org_id=org.id, scopes=[KeyScope.CHAT],
                                     created_at=now, digest=digest(raw)))
    await auth.authenticate(f"Bearer {raw}")
    return org.id


async def _caching_over(auth: Authenticator, secs: float) -> set[bool]:
    seen, deadline = set(), time.monotonic() + secs
    while time.monotonic() < deadline:
        seen.add(auth.caching)
        await asyncio.sleep(0.01)
    return seen


async def _until(auth: Authenticator, caching: bool, within: float) -> float:
    start = time.monotonic()
    while auth.caching != caching:
        assert time.monotonic() - start < within, f"caching still {auth.caching}"
        await asyncio.sleep(0.01)
    return time.monotonic() - start


# As services.py makes the client (RESP3: a fresh connection reads HELLO's answer before
# anything else), and one that reads nothing back on connecting (RESP2, no health check), to
# show the listener itself waits for Redis to confirm the subscription.
@pytest.mark.parametrize("protocol,health_check_interval", [(3, 30), (2, 0)])
def test_a_redis_that_stops_answering_ends_caching_until_it_confirms_again(
        redis_proc, protocol, health_check_interval):
    proc, port = redis_proc

    async def main():
        fast = Redis(port=port, decode_responses=True, socket_timeout=0.2)
        listener = Redis(port=port, decode_responses=True, socket_connect_timeout=0.5,
                         health_check_interval=health_check_interval, driver_info=None,
                         protocol=protocol)  # no socket timeout, as in services.py
        store = _CountingStore(fast, time.time)
        auth = Authenticator(store, Limits(), clock=time.time, cache_ttl=60)
        await _known_key(store, auth)
        task = asyncio.ensure_future(listen_for_invalidations(
            listener, auth, retry_secs=0.1, ping_every=PING_EVERY, pong_within=PONG_WITHIN))
        try:
            await _until(auth, True, within=5)
            assert await _caching_over(auth, 1.0) == {True}  # a quiet channel is not a lost one
            assert store.passes == 1
            proc.send_signal(signal.SIGSTOP)
            lost_after = await _until(auth, False, within=PING_EVERY + PONG_WITHIN + 2)
            # Resubscribing sends SUBSCRIBE fine, but no confirmation comes: still no caching.
            assert await _caching_over(auth, 1.0) == {False}
            proc.send_signal(signal.SIGCONT)
            await _until(auth, True, within=5)
            await asyncio.sleep(0.3)
            assert store.passes >= 2  # the known key was asked about again
            return lost_after
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            await fast.aclose()
            await listener.aclose()

    lost_after = asyncio.run(main())
    assert lost_after < PING_EVERY + PONG_WITHIN + 1.5


class _BrokenStore(TenancyStore):
    """Revalidation meets an error no Redis outage explains (a bug, a command refused)."""
    broken = False
    raised = 0

    async def lookup_many(self, digests):
        if self.broken:
            self.raised += 1
            raise RuntimeError("not a Redis error")
        return await super().lookup_many(digests)


def test_an_unexpected_revalidation_error_leaves_the_listener_running(redis_port):
    async def main():
        fast = Redis(port=redis_port, decode_responses=True, socket_timeout=0.5)
        listener = Redis(port=redis_port, decode_responses=True)
        store = _BrokenStore(fast, time.time)
        auth = Authenticator(store, Limits(), clock=time.time, cache_ttl=60)
        org_id = await _known_key(store, auth)
        task = asyncio.ensure_future(listen_for_invalidations(listener, auth, retry_secs=0.1))
        try:
            await _until(auth, True, within=5)
            store.broken = True
            await store.invalidate(org_id)  # the revalidation of its key fails
            deadline = time.monotonic() + 5
            while store.raised == 0:
                assert time.monotonic() < deadline, "no revalidation was attempted"
                await asyncio.sleep(0.01)
            await asyncio.sleep(0.2)
            assert not task.done(), task  # the listener, and so the worker, goes on
            store.broken = False
            await store.invalidate(org_id)  # and the next invalidation is still heard
            await asyncio.sleep(0.3)
            assert not task.done() and auth.caching
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            await fast.aclose()
            await listener.aclose()
    asyncio.run(main())
