"""Listening for auth invalidations: any worker's change drops every worker's cached lookups."""

from __future__ import annotations

import logging

import anyio
from anyio.abc import TaskGroup
from redis.asyncio import Redis
from redis.exceptions import RedisError

from .auth import Authenticator
from ..keyspace import INVALIDATE_CHANNEL

# The listener asks Redis for a PONG after this long without a message, and takes the
# subscription as lost when no message of any kind has come back this long after asking: a
# half-open connection (a partition, a peer gone without a FIN, a Redis frozen or swapped out)
# otherwise looks just like a quiet channel, and the cache would go on trusting itself.
PING_EVERY_SECS = 5.0
PONG_WITHIN_SECS = 3.0

log = logging.getLogger("llmgw.auth")


async def listen_for_invalidations(redis: Redis, auth: Authenticator, *, retry_secs: float = 0.5,
                                   ping_every: float = PING_EVERY_SECS,
                                   pong_within: float = PONG_WITHIN_SECS) -> None:
    """Run until cancelled. Caching is on only while subscribed: a lost subscription could
    miss a revocation, so lookups go to Redis until the subscription is back, and the keys
    known by then are asked about once more. Revalidations run beside the pump, so a long
    one never delays the next invalidation."""
    async with anyio.create_task_group() as revalidations:
        while True:
            try:
                async with redis.pubsub() as pubsub:
                    await _subscribe(pubsub, pong_within)
                    revalidations.start_soon(_revalidate, auth, auth.subscribed())
                    hook = _Reconnected(auth, revalidations)  # held here: redis-py keeps a weak ref
                    pubsub.connection.register_connect_callback(hook.on_connect)
                    try:
                        await _pump(pubsub, auth, revalidations, ping_every, pong_within)
                    finally:  # the connection goes back to the pool: the hook must not follow it
                        if pubsub.connection is not None:
                            pubsub.connection.deregister_connect_callback(hook.on_connect)
            except (RedisError, OSError, TimeoutError):
                pass
            finally:
                auth.unsubscribed()
            await anyio.sleep(retry_secs)


async def _revalidate(auth: Authenticator, digests: list[str]) -> None:
    """A revalidation pass. What Redis refuses is retried inside it; anything else is logged
    here and ends only this pass: an error in one task of the listener's group would end
    the listener, and with it the worker."""
    try:
        await auth.revalidate(digests)
    except Exception:  # noqa: BLE001 - logged with its trace; the next invalidation still runs
        log.exception("revalidation of %d keys failed", len(digests))


async def _subscribe(pubsub, within: float) -> None:
    """Subscribed once Redis says so: sending SUBSCRIBE can succeed to a Redis that is
    frozen or cut off, and caching must not start on that. Bounded, as the listener's socket
    has no timeout (redis-py's health check on a fresh connection would wait forever)."""
    with anyio.fail_after(within):
        await pubsub.subscribe(INVALIDATE_CHANNEL)
        while (message := await pubsub.get_message(timeout=within)) is None \
                or message["type"] != "subscribe":
            pass


class _Reconnected:
    """redis-py reconnects a dropped pub/sub connection and resubscribes by itself, without
    a word to us: whatever was published in between was missed, so treat it as our own
    resubscription (drop the cache, revalidate the known keys)."""

    def __init__(self, auth: Authenticator, revalidations: TaskGroup) -> None:
        self._auth = auth
        self._revalidations = revalidations

    def on_connect(self, _connection) -> None:  # called after redis-py's own resubscribe
        self._revalidations.start_soon(_revalidate, self._auth, self._auth.subscribed())


async def _pump(pubsub, auth: Authenticator, revalidations: TaskGroup, ping_every: float,
                pong_within: float) -> None:
    """Hand each invalidation on; raise TimeoutError when Redis stops answering. Any message
    (an invalidation, a subscribe confirmation after redis-py reconnected, our PONG) shows
    the connection alive; every wait is bounded, as the listener's socket has no timeout."""
    now, poll = anyio.current_time, min(1.0, ping_every, pong_within)
    heard, pinged = now(), None  # the last message; when our unanswered PING went out
    while True:
        with anyio.fail_after(pong_within + poll):
            message = await pubsub.get_message(timeout=poll)
        if message is not None:
            heard, pinged = now(), None
            if message["type"] == "message":
                revalidations.start_soon(_revalidate, auth, auth.invalidated(message["data"]))
        elif pinged is not None and now() - pinged >= pong_within:
            raise TimeoutError("no PONG from Redis: the invalidation subscription is lost")
        elif pinged is None and now() - heard >= ping_every:
            with anyio.fail_after(pong_within):
                await pubsub.ping()
            pinged = now()
