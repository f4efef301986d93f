"""The shared limiter: runs admit.lua and settle.lua against Redis, on the keys keyspace.py
names (one organisation's in one Redis Cluster slot; the platform-wide lease sets apart)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any
from pathlib import Path

import orjson
from redis.asyncio import Redis
from redis.exceptions import RedisError

from ..keyspace import GLOBAL_CONCURRENCY, limit_prefixes
from ..tenancy.limits import Limits
from .redis_clock import RedisClock
from .script_calls import ScriptCalls
from .redis_channel import RedisBusy, RedisChannel

SCRIPTS = Path(__file__).resolve().parent / "scripts"
log = logging.getLogger("llmgw.admission")
BILLED_MARK_MS = 3 * 86_400_000  # a job's bill-once bitmap outlives its 24 h window
# An admission script does nothing once this share of the Redis time limit has passed since
# it was sent: the rest covers its reply's way back. A caller gives up once Redis has been
# silent that long, so a verdict either reaches a caller still waiting for it or was never
# taken: a stalled Redis (a pause, SIGSTOP) that resumes runs none of the admissions queued
# meanwhile. A script that waited that long in a queue Redis was working through answers
# "expired" and is sent once more; a second "expired" is RedisBusy (503 limiter_busy).
DEADLINE_SHARE = 0.8
_SCOPE_FIELDS = ("rps", "burst", "rpm_limit", "tpm_limit", "max_concurrent", "daily_token_limit",
                 "daily_request_limit", "monthly_token_limit")


@dataclass(frozen=True)
class CounterSet:
    """One set of counters: the organisation's, or a key's own (when the key narrows limits)."""
    prefix: str          # rate windows (keyspace.limit_prefixes)
    quota_prefix: str    # daily and monthly quota buckets
    leases: str          # concurrency leases
    limits: tuple[int, ...]

    def admit_keys(self) -> list[str]:
        p = self.prefix
        return [p + "rps", p + "rpm", p + "tpm", p + "tpmw", self.leases, self.quota_prefix]

    def settle_keys(self) -> list[str]:
        return [self.prefix + "tpm", self.prefix + "tpmw", self.leases, self.quota_prefix]


def counter_sets(org_id: str, org_limits: Limits, key_id: str, key_limits: Limits) -> list[CounterSet]:
    scopes = [CounterSet(*limit_prefixes(org_id),
                    tuple(getattr(org_limits, f) or 0 for f in _SCOPE_FIELDS))]
    narrowed = tuple(getattr(key_limits, f) or 0 for f in _SCOPE_FIELDS)
    if any(narrowed):
        scopes.append(CounterSet(*limit_prefixes(org_id, key_id), narrowed))
    return scopes


def batch_counter_sets(org_id: str, org_limits: Limits, key_id: str,
                     key_limits: Limits) -> list[CounterSet]:
    """A batch line's counters: the same daily and monthly quotas as realtime requests, but
    none of the rate windows or concurrency leases that keep realtime responsive (batch work
    only takes room realtime leaves; MAX_CONCURRENT_BATCH bounds it)."""
    def quotas(limits: Limits) -> tuple[int, ...]:
        return (0, 0, 0, 0, 0, limits.daily_token_limit or 0, limits.daily_request_limit or 0,
                limits.monthly_token_limit or 0)
    scopes = [CounterSet(*limit_prefixes(org_id, batch=True), quotas(org_limits))]
    if any(quotas(key_limits)):
        scopes.append(CounterSet(*limit_prefixes(org_id, key_id, batch=True), quotas(key_limits)))
    return scopes


@dataclass
class Verdict:
    admitted: bool
    code: str
    retry_ms: int
    rpm: tuple[int, int, int]   # limit, remaining, reset ms (organisation scope)
    tpm: tuple[int, int, int]
    day: int
    month: int
    quota_used: tuple[int, int, int]  # daily tokens, daily requests, monthly tokens (org)
    room: int = 0  # more requests of this size that every limit would still admit
    lease_set: str = GLOBAL_CONCURRENCY  # the platform-wide lease set it holds a lease in


@dataclass
class Reservation:
    """What admission took, so settlement can give back exactly that."""
    admission_id: str  # the member of leases and window logs: the gateway's, never a client's
    org_id: str
    scopes: list[CounterSet]
    reserved: int
    day: int
    month: int
    usage_prefix: str
    settled: bool = field(default=False)
    admitted_at: float = 0.0  # the gate's clock: no request outlives MAX_REQUEST_SECS
    global_key: str = GLOBAL_CONCURRENCY  # the platform-wide lease set it holds a lease in
    # A batch line: (the job's bill-once bitmap, the line). Only the first settlement of a
    # line bills; a line run again (its runner died after the answer) costs nothing more.
    bill_once: tuple[str, int] | None = None


class RedisLimiter:
    def __init__(self, redis: Redis, channel: RedisChannel, *, lease_ms: int,
                 global_max_concurrent: int, usage_retention_secs: int,
                 clock: RedisClock | None = None, platform_sets: bool = True) -> None:
        """`platform_sets=False` (a Redis Cluster): no lease set shared by every organisation,
        since one script cannot touch keys of two slots; the platform-wide caps (global and
        batch concurrency) are then not kept in Redis."""
        self._r = redis  # renewals and peeks; admit, settle and pings take the channel
        self._channel = channel
        usage = (SCRIPTS / "usage.lua").read_text()  # a function both scripts call
        self._admit = redis.register_script(usage + (SCRIPTS / "admit.lua").read_text())
        self._settle = redis.register_script(usage + (SCRIPTS / "settle.lua").read_text())
        self._unadmit = redis.register_script(usage + (SCRIPTS / "unadmit.lua").read_text())
        self._undoing: set[asyncio.Task] = set()  # kept referenced until they finish
        self._peek = redis.register_script((SCRIPTS / "peek.lua").read_text())
        self._scripts = ScriptCalls(channel)
        self._lease_ms = lease_ms
        self._global_max = global_max_concurrent if platform_sets else 0
        self._platform_sets = platform_sets
        self._retention = usage_retention_secs
        self._clock = clock or RedisClock(time.monotonic, time.time)
        self._within = channel.timeout * DEADLINE_SHARE

    async def admit(self, admission_id: str, scopes: list[CounterSet], reserve: int,
                    tz_offset_secs: int, final: tuple[str, dict[str, int]] | None = None,
                    lane: tuple[str, int] | None = None) -> Verdict:
        """`final` (usage prefix, usage): admit a request that has nothing to settle (a cache
        hit): no lease, `reserve` is what it bills, and its usage is counted at once. `lane`:
        the platform-wide lease set and its cap, if not the realtime one."""
        global_key, global_max = self._platform_set(scopes, lane)
        keys = [k for s in scopes for k in s.admit_keys()] + [global_key]
        args = [admission_id, self._lease_ms, reserve, tz_offset_secs, len(scopes), 0,
                *(v for s in scopes for v in s.limits), global_max]
        if final is not None:
            keys.append(final[0])
            args.append(self._retention)
            for name, n in final[1].items():
                args += [name, n]

        def undo_if_taken(reply: list) -> None:
            if reply and reply[0] == 1:
                self._undo(keys, admission_id, reserve, len(scopes), reply, final)
        r, expired = await self._call_admit(keys, args, undo_if_taken)
        if expired:
            # Answered in time, yet past its deadline by Redis's clock: the offset estimate
            # was off (a stepped clock, a wait for a new connection). That reply corrected
            # it: once more.
            r, expired = await self._call_admit(keys, args, undo_if_taken)
            if expired:  # Redis answers, but too late for this call: a queue, not an outage
                raise RedisBusy("admission reached Redis after its deadline")
        return Verdict(bool(r[0]), r[1] if isinstance(r[1], str) else r[1].decode(), int(r[2]),
                       (int(r[3]), int(r[4]), int(r[5])), (int(r[6]), int(r[7]), int(r[8])),
                       int(r[9]), int(r[10]), (int(r[11]), int(r[12]), int(r[13])), int(r[14]),
                       global_key)

    def _platform_set(self, scopes: list[CounterSet],
                     lane: tuple[str, int] | None) -> tuple[str, int]:
        """The platform-wide lease set an admission takes a lease in, and its cap. On a
        Redis Cluster the organisation's own set stands in, with no cap: never read."""
        if not self._platform_sets:
            return scopes[0].leases, 0
        return lane or (GLOBAL_CONCURRENCY, self._global_max)

    async def _call_admit(self, keys: list[str], args: list,
                          on_late: Callable[[list], None]) -> tuple[list, bool]:
        """The reply, and whether it says its deadline had passed; the clock learns from it."""
        clock = self._clock
        args[5] = clock.deadline_ms(self._within)
        sent = clock.local()
        r = await self._scripts.call(self._admit, keys, [orjson.dumps(args)], on_late)
        expired = r[1] in (b"expired", "expired")
        clock.sample(sent, int(r[15]), clock.local(), force=expired)
        return r, expired

    def _undo(self, keys: list[str], admission_id: str, reserve: int, nscopes: int,
              reply: list, final: tuple[str, dict[str, int]] | None) -> None:
        """A verdict that came after its caller gave up (the deadline leaves a margin for the
        way back, but a slow Redis or a long loop turn can exceed it): the caller answered
        without it, so what it took goes back (unadmit.lua), in the background."""
        undo = [admission_id, reserve, int(reply[9]), int(reply[10]), nscopes]
        if final is not None:  # its usage was counted too
            undo.append(self._retention)
            for name, n in final[1].items():
                undo += [name, -n]
        task = asyncio.get_running_loop().create_task(self._unadmit_call(keys, undo))
        self._undoing.add(task)
        task.add_done_callback(self._undoing.discard)

    async def _unadmit_call(self, keys: list[str], undo: list) -> None:
        try:
            await self._scripts.call(self._unadmit, keys, [orjson.dumps(undo)])
        except (RedisError, OSError) as exc:
            log.warning("admission %s came back too late and could not be undone: %s",
                        undo[0], exc)

    def settle(self, res: Reservation, used: int, usage: dict[str, int]) -> Awaitable[Any]:
        """Sent now (written to Redis before the caller's next step), replied to later."""
        keys = [k for s in res.scopes for k in s.settle_keys()] + [res.global_key, res.usage_prefix]
        args = [res.admission_id, res.reserved, used, res.day, res.month, len(res.scopes),
                self._retention, -1, BILLED_MARK_MS]
        if res.bill_once is not None:
            keys.append(res.bill_once[0])
            args[7] = res.bill_once[1]
        for name, n in usage.items():
            args += [name, n]
        return self._scripts.start(self._settle, keys, [orjson.dumps(args)])

    async def peek(self, scope: CounterSet) -> tuple[int, int, int, int]:
        """(requests, reset ms, tokens, reset ms) in the scope's current 60 s windows."""
        p = scope.prefix
        r = await self._peek(keys=[p + "rpm", p + "tpm", p + "tpmw"])
        return int(r[0]), int(r[1]), int(r[2]), int(r[3])

    async def ping(self) -> None:
        """On the request path's own connection: readiness reports what requests would meet."""
        await self._channel.send(("PING",))

    async def renew(self, reservations: list[Reservation], lease_ms: int | None = None) -> None:
        """Push the leases of running requests forward (a killed worker's simply expire)."""
        if not reservations:
            return
        lease_ms = lease_ms or self._lease_ms
        now_ms = int((await self._r.time())[0]) * 1000
        expiry = now_ms + lease_ms
        keys = set()
        async with self._r.pipeline(transaction=False) as pipe:
            for res in reservations:
                for scope in res.scopes:
                    pipe.zadd(scope.leases, {res.admission_id: expiry}, xx=True)
                    keys.add(scope.leases)
                pipe.zadd(res.global_key, {res.admission_id: expiry}, xx=True)
                keys.add(res.global_key)
            # The lease sets themselves outlive their newest lease: without this, a set that
            # only long requests kept using expired 2 leases after the last admission, and
            # those requests stopped counting against max_concurrent.
            for key in keys:
                pipe.pexpire(key, lease_ms * 2)
            await pipe.execute()
