"""Coalescing the limiter's script calls: those made in one event-loop turn go as one pipeline.

Under load many requests admit and settle at once. redis-py spends more CPU on each call
(pool checkout, retry wrapper, tracing hooks) than on the bytes it sends; one pipelined
write and read for a whole batch pays that once. A lone call (a quiet worker) goes straight
through, so there is nothing to wait for and no batching cost at low load.
"""

from __future__ import annotations

import asyncio
from typing import Any

from redis.asyncio import Redis
from redis.commands.core import AsyncScript
from redis.exceptions import NoScriptError

MAX_BATCH = 64  # bounds one pipeline's size, so a burst cannot build a huge write


class ScriptBatcher:
    def __init__(self, redis: Redis) -> None:
        self._redis = redis
        self._pending: list[tuple[AsyncScript, list, list, asyncio.Future]] = []
        self._tasks: set[asyncio.Task] = set()

    def call(self, script: AsyncScript, keys: list, args: list) -> asyncio.Future:
        """Queue one EVALSHA; the future gets its result (or the Redis error)."""
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self._pending.append((script, keys, args, future))
        if len(self._pending) == 1:
            loop.call_soon(self._flush)  # after every request of this turn has queued its call
        elif len(self._pending) >= MAX_BATCH:
            self._flush()
        return future

    def _flush(self) -> None:
        batch, self._pending = self._pending, []
        if not batch:
            return
        task = asyncio.get_running_loop().create_task(self._run(batch))
        self._tasks.add(task)  # held until done: a task nobody references may be collected
        task.add_done_callback(self._tasks.discard)

    async def _run(self, batch: list) -> None:
        if len(batch) == 1:
            script, keys, args, future = batch[0]
            await _settle(future, self._one(script, keys, args))
            return
        pipe = self._redis.pipeline(transaction=False)
        for script, keys, args, _ in batch:
            pipe.evalsha(script.sha, len(keys), *keys, *args)
        try:
            results = await pipe.execute(raise_on_error=False)
        except BaseException as exc:  # noqa: BLE001 - every caller must learn of it
            for *_, future in batch:
                if not future.done():
                    future.set_exception(_copy(exc))
            if not isinstance(exc, Exception):
                raise
            return
        for (script, keys, args, future), result in zip(batch, results):
            if isinstance(result, NoScriptError):  # Redis restarted and lost its script cache
                await _settle(future, self._one(script, keys, args))
            elif isinstance(result, Exception):
                _resolve(future, exc=result)
            else:
                _resolve(future, result=result)

    async def _one(self, script: AsyncScript, keys: list, args: list) -> Any:
        return await script(keys=keys, args=args)  # loads the script again if Redis lost it


async def _settle(future: asyncio.Future, call) -> None:
    try:
        result = await call
    except Exception as exc:  # noqa: BLE001 - handed to the waiting caller
        _resolve(future, exc=exc)
    else:
        _resolve(future, result=result)


def _resolve(future: asyncio.Future, *, result: Any = None, exc: BaseException | None = None) -> None:
    if future.done():  # the caller was cancelled meanwhile
        return
    if exc is not None:
        future.set_exception(exc)
    else:
        future.set_result(result)


def _copy(exc: BaseException) -> BaseException:
    """Each waiter gets an exception of the same type (one instance raised in many tasks
    would share and grow a single traceback)."""
    try:
        return type(exc)(*exc.args)
    except Exception:  # noqa: BLE001 - an exception type with an unusual constructor
        return exc
