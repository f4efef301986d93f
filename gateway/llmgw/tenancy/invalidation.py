"""Listening for auth invalidations: any worker's change drops every worker's cached lookups."""

from __future__ import annotations

import anyio
from redis.asyncio import Redis
from redis.exceptions import RedisError

from .auth import Authenticator
from .store import INVALIDATE_CHANNEL

PING_EVERY_SECS = 5.0


async def listen_for_invalidations(redis: Redis, auth: Authenticator, *,
                                   retry_secs: float = 0.5) -> None:
    """Run until cancelled. Caching is on only while subscribed: a lost subscription could
    miss a revocation, so lookups go to Redis until the subscription is back."""
    while True:
        try:
            async with redis.pubsub() as pubsub:
                await pubsub.subscribe(INVALIDATE_CHANNEL)
                auth.clear()
                auth.caching = True
                await _pump(pubsub, auth)
        except (RedisError, OSError, TimeoutError):
            pass
        finally:
            auth.caching = False
            auth.clear(keep_last_known=True)
        await anyio.sleep(retry_secs)


async def _pump(pubsub, auth: Authenticator) -> None:
    idle = 0.0
    while True:
        message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
        if message is not None:
            auth.clear()
            idle = 0.0
            continue
        idle += 1.0
        if idle >= PING_EVERY_SECS:  # a silently dead connection shows up as a failed ping
            await pubsub.ping()
            idle = 0.0
