"""A backend call started beside its own admission, so the two round trips overlap.

Admission costs a Redis round trip; at low load that is a third of what the gateway adds to a
request. When the key's last verdict left plenty of room (`AdmissionGate.may_start_early`),
the backend call starts at once, in its own task, while the verdict is on its way. Nothing
reaches the client before the verdict: the caller awaits the ticket first, then the call. A
refusal cancels the call, which closes its backend connection (vLLM then aborts the request),
and `discard` frees whatever the call had already opened. Without room, the call starts only
once the request is admitted, as it always did.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

from .gate import Ticket

T = TypeVar("T")


async def admit_beside(admit: Awaitable[Ticket], call: Callable[[], Awaitable[T]], *,
                       early: bool, discard: Callable[[T], Awaitable[None]] | None = None,
                       ) -> tuple[Ticket, Awaitable[T]]:
    """The ticket (or admission's error), and the call still to be awaited. The caller owns
    the ticket from here: it settles it however the call ends."""
    if not early:
        return await admit, call()
    task = asyncio.get_running_loop().create_task(call())
    try:
        ticket = await admit
    except BaseException:
        task.cancel()
        await _abandon(task, discard)
        raise
    return ticket, task


async def _abandon(task: asyncio.Task, discard: Callable[[T], Awaitable[None]] | None) -> None:
    """Wait for a cancelled call to unwind; free what it returned if it had finished. Its
    failure is moot (the request was refused) and is retrieved, so never logged."""
    try:
        await asyncio.wait((task,))
    finally:
        if discard is not None:
            await free_if_finished(task, discard)


async def free_if_finished(pending: Awaitable[T], discard: Callable[[T], Awaitable[None]]) -> None:
    """For a caller leaving on an exception: a call task that had already finished holds a
    result nobody will use (a cancellation can land just after the task completed)."""
    if isinstance(pending, asyncio.Task) and pending.done() and not pending.cancelled() \
            and pending.exception() is None:
        await discard(pending.result())
