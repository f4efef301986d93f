"""The batch runner: slots that each claim a line, send it through the gateway on the batch
lane, spool its result and record it once; beside them, the leases kept alive, a heartbeat,
and the upkeep of jobs (upkeep.py). Any number of runners may run, on any hosts sharing Redis
and DATA_DIR.

A line the gateway refuses for lack of room is given back at once, and the runner sends no
more lines of its model than the gateway lets start (pacing.py): batch work stops taking
capacity the moment realtime needs it, without asking for room again and again.
"""

from __future__ import annotations

import logging
import os
import random
import socket
import tempfile
import time
from pathlib import Path
from collections.abc import Callable

import anyio
import orjson
from redis.asyncio import Redis
from redis.exceptions import RedisError

from .. import keyspace
from .calls import Gateway, Later, Outcome, Paused, Result, call
from .item import BatchItem
from .jobs import JobStore
from .pacing import Pacer
from .queue import Claim, WorkQueue
from .spool import Spool, batch_dir
from .upkeep import Upkeep
from .validate import read_span

log = logging.getLogger("llmgw.batches.runner")
IDLE_SECS = (0.05, 1.0)     # the polling slot's wait while nothing is claimable: doubling to 1 s
PACED_SECS = 0.02           # its wait while every model with work is paced (the next probe)
HEARTBEAT_SECS = 2.0
# Touched with every heartbeat: the container's health check reads its age (it serves no HTTP).
ALIVE_FILE = Path(tempfile.gettempdir()) / "llmgw-batch-runner.alive"


class Runner:
    def __init__(self, *, redis: Redis, jobs: JobStore, queue: WorkQueue, upkeep: Upkeep,
                 gateway: Gateway, root, slots: int, recheck_secs: float = 60.0,
                 clock: Callable[[], float] = time.monotonic,
                 rng: random.Random | None = None) -> None:
        self._redis, self._jobs, self._queue = redis, jobs, queue
        self._upkeep, self._gateway, self._root = upkeep, gateway, root
        self._slots, self._clock, self._rng = slots, clock, rng or random.Random()
        self._recheck_ms = int(recheck_secs * 1000)
        self.id = f"{socket.gethostname()}-{os.getpid()}-{random.getrandbits(24):06x}"
        self._held: dict[str, Claim] = {}
        self._pacer = Pacer(clock, self._rng)
        self._static: dict[str, dict[str, str]] = {}    # job -> fields that never change
        self._spool = Spool(root, self.id)
        self.lines_done = 0
        self.stopping = False
        self._polling = anyio.Lock()  # one slot polls the queue; the others wait their turn

    def stop(self) -> None:
        """Take no more lines; run() returns once the lines held now are done."""
        self.stopping = True

    async def run(self) -> None:
        async with anyio.create_task_group() as tg:
            tg.start_soon(self._renew_forever)
            tg.start_soon(self._heartbeat_forever)
            tg.start_soon(self._upkeep.run_forever)
            async with anyio.create_task_group() as slots:
                for _ in range(self._slots):
                    slots.start_soon(self._slot)
            tg.cancel_scope.cancel()
        try:
            await self._redis.hdel(keyspace.BATCH_RUNNERS, self.id)
        except (RedisError, OSError):
            pass  # its heartbeat ages out

    async def _slot(self) -> None:
        """Claim and run lines. Only one slot at a time waits for work, so an idle runner asks
        Redis about once a second; a slot that gets a line hands the turn on at once, so all
        slots fill within a few milliseconds when work arrives (as far as pacing lets them)."""
        while not self.stopping:
            try:
                async with self._polling:
                    found = await self._next_claim()
                if found is None:
                    return
                claim, job = found
                if job is None:
                    continue  # deleted with its organisation: the lease is dropped by claim.lua
                probe = self._pacer.start(job["model"])
                self._held[claim.member] = claim
                outcome = None
                try:
                    outcome = await self._run_line(claim, job)
                finally:
                    self._held.pop(claim.member, None)
                    self._pacer.end(job["model"], probe=probe,
                                    refused=isinstance(outcome, Later) and outcome.busy,
                                    succeeded=isinstance(outcome, Result))
            except (RedisError, OSError) as exc:
                log.warning("batch slot: %s; retrying", exc)
                await anyio.sleep(1.0)

    async def _next_claim(self) -> tuple[Claim, dict[str, str] | None] | None:
        wait = IDLE_SECS[0]
        while not self.stopping:
            blocked = self._pacer.blocked()
            claim = await self._queue.claim(blocked)
            if claim is not None:
                return claim, await self._job(claim.org_id, claim.batch_id)
            # Paced models get their next probe soon; an empty queue is asked less and less.
            await anyio.sleep((PACED_SECS if blocked else wait) * self._rng.uniform(0.5, 1.0))
            wait = IDLE_SECS[0] if blocked else min(IDLE_SECS[1], wait * 2)
        return None

    async def _run_line(self, claim: Claim, job: dict[str, str]) -> Outcome:
        custom_id, body = await anyio.to_thread.run_sync(self._read, claim)
        item = BatchItem(claim.org_id, claim.batch_id, claim.line)
        outcome = await call(self._gateway, item, job["key"], job["endpoint"], custom_id, body)
        if isinstance(outcome, Result):
            await self._spool.append(claim.org_id, claim.batch_id, claim.line, claim.attempt,
                                     outcome.error, outcome.output)
            recorded = await self._queue.done(claim, "failed" if outcome.error else "completed",
                                              outcome.usage)
            self.lines_done += recorded > 0
            if recorded == 2:
                await self._upkeep.finalise(claim.org_id, claim.batch_id)
        elif isinstance(outcome, Paused):
            # Until the quota resets, or the next look: an operator may raise it meanwhile.
            wait_ms = min(outcome.for_ms, self._recheck_ms)
            await self._queue.pause(claim.org_id, wait_ms)
            await self._queue.release(claim, wait_ms)
        else:
            await self._queue.release(claim, outcome.delay_ms)
        return outcome

    async def _job(self, org_id: str, batch_id: str) -> dict[str, str] | None:
        ref = keyspace.batch_ref(org_id, batch_id)
        if ref not in self._static:
            fields = await self._jobs.fields(org_id, batch_id)
            if fields is None:
                return None
            if len(self._static) > 10_000:
                self._static.clear()
            self._static[ref] = {k: fields.get(k, "") for k in ("key", "endpoint", "model")}
        return self._static[ref]

    def _read(self, claim: Claim) -> tuple[str, bytes]:
        folder = batch_dir(self._root, claim.org_id, claim.batch_id)
        offset, length = read_span(folder / "lines.idx", claim.line)
        with open(folder / "input.jsonl", "rb") as f:
            f.seek(offset)
            line = orjson.loads(f.read(length))
        return line["custom_id"], orjson.dumps(line["body"])

    async def _renew_forever(self) -> None:
        while True:
            await anyio.sleep(self._queue.lease_ms / 3000)
            try:
                await self._queue.renew(list(self._held.values()))
            except (RedisError, OSError) as exc:
                log.warning("batch lease renewal failed: %s", exc)

    async def _heartbeat_forever(self) -> None:
        while True:
            beat = {"pid": os.getpid(), "host": socket.gethostname(), "slots": self._slots,
                    "running": len(self._held), "lines_done": self.lines_done,
                    "seen_at": int(time.time())}
            try:
                await self._redis.hset(keyspace.BATCH_RUNNERS, self.id, orjson.dumps(beat).decode())
                ALIVE_FILE.touch()  # only while Redis hears it: a runner cut off is not healthy
            except (RedisError, OSError):
                pass
            await anyio.sleep(HEARTBEAT_SECS)
