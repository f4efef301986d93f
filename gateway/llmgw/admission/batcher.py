"""Coalescing the limiter's script calls: those made in one event-loop turn share one write.

Under load many requests admit and settle at once. redis-py spends more CPU on each call
(pool checkout, retry wrapper, tracing hooks) than on the bytes it sends; one write and one
read of the replies for a whole batch pays that once. Nothing waits for a batch to fill: a
batch is whatever was queued when the event loop comes round, often a single call.
"""

from __future__ import annotations

import asyncio
from typing import Any

from redis.asyncio import Redis
from redis.commands.core import AsyncScript
from redis.exceptions import ConnectionError, NoScriptError, ResponseError

MAX_BATCH = 64  # bounds one batch's size, so a burst cannot build a huge write


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
        try:
            lost = await self._send(batch)
            if lost:  # Redis restarted and lost its script cache: load once, send those again
                for script in {id(item[0]): item[0] for item, _ in lost}.values():
                    await self._redis.script_load(script.script)
                for item, reply in await self._send([item for item, _ in lost]):
                    _resolve(item[3], exc=reply)
        except BaseException as exc:  # noqa: BLE001 - every caller must learn of it
            for *_, future in batch:
                _resolve(future, exc=_copy(exc))
            if not isinstance(exc, Exception):
                raise

    async def _send(self, batch: list) -> list:
        """Run the batch and resolve each caller's future, except where Redis did not know
        the script: those calls are returned, each with its reply."""
        commands = [("EVALSHA", script.sha, len(keys), *keys, *args)
                    for script, keys, args, _ in batch]
        lost = []
        for item, reply in zip(batch, await self._execute(commands)):
            if isinstance(reply, NoScriptError):
                lost.append((item, reply))
            elif isinstance(reply, Exception):
                _resolve(item[3], exc=reply)
            else:
                _resolve(item[3], result=reply)
        return lost

    async def _execute(self, commands: list[tuple]) -> list:
        """Send the commands down one pooled connection and read every reply; an error reply
        is returned in its place, for its own caller.

        This skips Redis.execute_command, whose wrappers (retry, tracing hooks, command
        checks) cost about as much CPU as the call itself. Its one behaviour that matters is
        kept: a pooled connection found dead (Redis restarted) is replaced once.
        """
        pool = self._redis.connection_pool
        for attempt in (1, 2):
            conn = await pool.get_connection()
            try:
                await conn.send_packed_command(b"".join(map(_resp, commands)))
                return [await _reply(conn) for _ in commands]
            except ConnectionError:
                if attempt == 2:
                    raise
            finally:
                await pool.release(conn)
        raise AssertionError("unreachable")


def _resp(args: tuple) -> bytes:
    """One command in Redis' wire format (RESP). Our arguments are only str, bytes and int;
    redis-py's general encoder spent more on them than the rest of the call."""
    parts = [b"*%d\r\n" % len(args)]
    for arg in args:
        data = arg if isinstance(arg, bytes) else str(arg).encode()
        parts.append(b"$%d\r\n%b\r\n" % (len(data), data))
    return b"".join(parts)


async def _reply(conn) -> Any:
    try:
        return await conn.read_response()
    except ResponseError as exc:  # read in full: the connection is still in step
        return exc


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
