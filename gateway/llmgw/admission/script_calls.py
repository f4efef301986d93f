"""The limiter's script calls: EVALSHA on the request path's Redis channel, and a script that
Redis has lost (restart, SCRIPT FLUSH) loaded again, once, then the calls sent again."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from redis.commands.core import AsyncScript
from redis.exceptions import NoScriptError

from ..single_flight import SingleFlight
from .redis_channel import RedisChannel


class ScriptCalls:
    """Calls go out as the channel sends them: a loop turn's first at once, the rest of the
    turn together; nothing waits for a batch to fill."""

    def __init__(self, channel: RedisChannel) -> None:
        self._channel = channel
        self._loads: SingleFlight = SingleFlight()

    async def call(self, script: AsyncScript, keys: list, args: list,
                   on_late: Callable[[Any], None] | None = None) -> Any:
        """The script's reply; one that comes after this caller gave up goes to `on_late`."""
        command = ("EVALSHA", script.sha, len(keys), *keys, *args)
        return await self._reply(script, command, self._channel.send(command, on_late), on_late)

    def start(self, script: AsyncScript, keys: list, args: list) -> Awaitable[Any]:
        """As `call`, but the command is written to Redis now, not with the rest of this loop
        turn's calls: it must reach Redis before whatever the caller does next."""
        command = ("EVALSHA", script.sha, len(keys), *keys, *args)
        return self._reply(script, command, self._channel.send(command, at_once=True), None)

    async def _reply(self, script: AsyncScript, command: tuple, sent: asyncio.Future,
                     on_late: Callable[[Any], None] | None) -> Any:
        try:
            return await sent
        except NoScriptError:
            await self._load(script)
            return await self._channel.send(command, on_late)

    async def _load(self, script: AsyncScript) -> None:
        """One SCRIPT LOAD however many callers found the script missing at once."""
        await asyncio.shield(self._loads.run(  # one caller cancelled must not cancel the load
            script.sha, lambda: self._channel.send(("SCRIPT", "LOAD", script.script))))
