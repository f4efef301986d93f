"""Listening for auth invalidations: any worker's change drops every worker's cached lookups."""

from __future__ import annotations

import anyio
from anyio.abc import TaskGroup
from redis.asyncio import Redis
from redis.exceptions import RedisError

from .auth import Authenticator
from .store import INVALIDATE_CHANNEL

PING_EVERY_SECS = 5.0


async def listen_for_invalidations(redis: Redis, auth: Authenticator, *,
                                   retry_secs: float = 0.5) -> None:
    """Run until cancelled. Caching is on only while subscribed: a lost subscription could
    miss a revocation, so lookups go to Redis until the subscription is back, and the keys
    known by then are asked about once more. Revalidations run beside the pump, so a long
    one never delays the next invalidation."""
    async with anyio.create_task_group() as revalidations:
        while True:
            try:
                async with redis.pubsub() as pubsub:
                    await pubsub.subscribe(INVALIDATE_CHANNEL)
                    revalidations.start_soon(auth.revalidate, auth.subscribed())
                    hook = _Reconnected(auth, revalidations)  # held here: redis-py keeps a weak ref
                    pubsub.connection.register_connect_callback(hook.on_connect)
                    try:
                        await _pump(pubsub, auth, revalidations)
                    finally:  # the connection goes back to the pool: the hook must not follow it
                        if pubsub.connection is not None:
                            pubsub.connection.deregister_connect_callback(hook.on_connect)
            except (RedisError, OSError, TimeoutError):
                pass
            finally:
                auth.unsubscribed()
            await anyio.sleep(retry_secs)


class _Reconnected:
    """redis-py reconnects a dropped pub/sub connection and resubscribes by itself, without
    a word to us: whatever was published in between was missed, so treat it as our own
    resubscription (drop the cache, revalidate the known keys)."""

    def __init__(self, auth: Authenticator, revalidations: TaskGroup) -> None:
        self._auth = auth
        self._revalidations = revalidations

    def on_connect(self, _connection) -> None:  # called after redis-py's own resubscribe
        self._revalidations.start_soon(self._auth.revalidate, self._auth.subscribed())


async def _pump(pubsub, auth: Authenticator, revalidations: TaskGroup) -> None:
    idle = 0.0
    while True:
        message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
        if message is not None:
            if message["type"] == "message":  # not the pong of our own ping
                revalidations.start_soon(auth.revalidate, auth.invalidated(message["data"]))
            idle = 0.0
            continue
        idle += 1.0
        if idle >= PING_EVERY_SECS:  # a silently dead connection shows up as a failed ping
            await pubsub.ping()
            idle = 0.0
