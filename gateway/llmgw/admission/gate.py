"""The admission gate: one atomic Redis step per request, its settlement, leases, and what
happens when Redis is away (the LIMITER_FAILURE_POLICY)."""

from __future__ import annotations

import itertools
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import anyio
from redis.exceptions import RedisError

from ..errors import LimiterBusy, LimiterUnavailable, RateLimited
from ..observability.metrics import Metrics
from ..observability.trace import Trace
from ..tenancy.auth import Principal
from ..tenancy.limits import Limits
from .headers import ratelimit_headers
from .local_limiter import LocalLimiter
from .redis_channel import RedisBusy
from ..keyspace import BATCH_CONCURRENCY, batch_billed, usage_prefix
from .rejections import Rejections
from .windows import tz_offset
from .redis_limiter import RedisLimiter, Reservation, batch_counter_sets, counter_sets

log = logging.getLogger("llmgw.admission")
# Evidence that Redis is unreachable, which the LIMITER_FAILURE_POLICY is for: no connection,
# or silence for REDIS_TIMEOUT_SECS while a call waited. A long queue of our own (RedisBusy,
# caught first) is not: Redis is still the only one that may admit.
REDIS_DOWN = (RedisError, OSError, TimeoutError)

# A key's backend call may start before its verdict arrives only if its last verdict, at most
# ROOM_FRESH_SECS old, left room for ROOM_MIN more requests; this worker then uses at most
# 1/ROOM_SHARE of that room before the next verdict, so a burst spread over many workers
# rarely starts calls that their verdicts then refuse (each such call is cut short).
ROOM_MIN = 64
ROOM_SHARE = 8
ROOM_FRESH_SECS = 1.0
TRACKED_MAX = 10_000  # keys (room) or organisations (quota gauges) remembered per worker;
                      # past that a table starts again, empty: that only costs a write or a wait
QUOTA_GAUGE_STEP = 0.002  # a quota gauge is rewritten once its share has moved this much


def admission_ids(prefix: str) -> Callable[[], str]:
    """Names for admissions: the members of leases and window logs. Made here, never taken
    from a client: a client's X-Request-ID, sent on every request, made all its requests one
    member, so each overwrote the last and no limit counted more than one. `prefix` (random,
    one per worker) keeps workers and replicas apart; a counter keeps requests apart."""
    counter = itertools.count()
    return lambda: f"{prefix}{next(counter):x}"


@dataclass
class Ticket:
    """An admitted request: what to settle, and the headers its answer carries."""
    request_id: str  # the client-facing correlation id, for logs only
    org_id: str
    key_id: str
    reserved: int
    headers: dict[str, str]
    reservation: Reservation | None  # None: admitted by the local limiter (Redis was away)
    usage: dict[str, int] = field(default_factory=dict)
    done: bool = False
    trace: Trace | None = None   # set by the request path, for metrics and the access line
    meter_key: str = ""          # usage field prefix: key|model|endpoint|
    batch: bool = False          # a batch runner's line (batches/lane.py)


def _moved(share: float | None, last: float | None) -> bool:
    """A quota share worth rewriting: set, unset, or QUOTA_GAUGE_STEP away from the last."""
    if share is None or last is None:
        return (share is None) != (last is None)
    return abs(share - last) >= QUOTA_GAUGE_STEP


class AdmissionGate:
    def __init__(self, limiter: RedisLimiter, local: LocalLimiter, *, fail_open: bool,
                 lease_secs: float, clock: Callable[[], float], metrics: Metrics,
                 new_id: Callable[[], str], max_request_secs: float = float("inf"),
                 max_concurrent_batch: int = 0, rejections: Rejections | None = None) -> None:
        self._limiter = limiter
        self._rejections = rejections
        self._batch_lane = (BATCH_CONCURRENCY, max_concurrent_batch)
        self._new_id = new_id
        self._local = local
        self._fail_open = fail_open
        self._lease_secs = lease_secs
        self._max_request_secs = max_request_secs
        self._clock = clock
        self._metrics = metrics
        self._running: dict[str, Reservation] = {}
        self._room: dict[str, tuple[float, int]] = {}  # key id -> (verdict time, calls left)
        self._quota_noted: dict[str, tuple] = {}  # org id -> the quota shares last written
        self.degraded = False  # Redis unreachable at the last attempt

    async def admit(self, principal: Principal, reserve: int, request_id: str,
                    final_usage: dict[str, int] | None = None) -> Ticket:
        """A ticket to settle once the answer is known; with `final_usage` (a request answered
        without a backend), one already settled: `reserve` is what it bills, and that usage
        is counted in the same step."""
        batch = principal.batch
        scopes = (counter_sets if batch is None else batch_counter_sets)(
            principal.org_id, principal.org_limits, principal.key_id, principal.key_limits)
        final = None if final_usage is None else (usage_prefix(principal.org_id), final_usage)
        try:
            admission_id = self._new_id()
            verdict = await self._limiter.admit(admission_id, scopes, reserve,
                                                tz_offset(principal.timezone), final,
                                                lane=None if batch is None else self._batch_lane)
        except RedisBusy:
            self._metrics.redis_errors.labels("admit_busy").inc()
            raise LimiterBusy("too many admissions are waiting for the rate limiter; "
                              "retry shortly") from None
        except REDIS_DOWN:
            self._went_down("admit")
            ticket = self._admit_locally(principal, reserve, request_id)
            if final is not None:
                await self.settle(ticket, reserve)  # frees the local slot at once
            return ticket
        self._came_back()
        headers = ratelimit_headers(verdict.rpm, verdict.tpm)
        if not verdict.admitted:
            self._note_room(principal.key_id, 0)
            raise self._refused(principal, verdict.code, -(-verdict.retry_ms // 1000), headers)
        if final is None:  # a final admission skips the concurrency checks: no room for a call
            self._note_room(principal.key_id, verdict.room)
        self._note_quota(principal, verdict.quota_used)
        if final is not None:
            return Ticket(request_id, principal.org_id, principal.key_id, reserve, headers, None,
                          done=True)
        res = Reservation(admission_id, principal.org_id, scopes, reserve, verdict.day,
                          verdict.month, usage_prefix(principal.org_id), admitted_at=self._clock())
        res.global_key = verdict.lease_set  # the platform-wide lease set it was admitted into
        if batch is not None:
            res.bill_once = (batch_billed(batch.org_id, batch.batch_id), batch.line)
        self._running[admission_id] = res
        return Ticket(request_id, principal.org_id, principal.key_id, reserve, headers, res,
                      batch=batch is not None)

    def may_start_early(self, principal: Principal) -> bool:
        """Whether this request's backend call may start while its admission is on the way
        (the answer still waits for the verdict): only with a fresh verdict's room to spare."""
        room = self._room.get(principal.key_id)
        if room is None or self.degraded or principal.batch is not None:
            return False
        when, left = room
        if left <= 0 or self._clock() - when > ROOM_FRESH_SECS:
            return False
        self._room[principal.key_id] = (when, left - 1)
        return True

    def _note_room(self, key_id: str, room: int) -> None:
        if len(self._room) >= TRACKED_MAX and key_id not in self._room:
            self._room.clear()
        self._room[key_id] = (self._clock(), room // ROOM_SHARE if room >= ROOM_MIN else 0)

    async def peek_headers(self, principal: Principal) -> dict[str, str]:
        """The x-ratelimit-* headers for an answer that takes nothing; none if Redis is away."""
        limits = principal.org_limits
        scope = counter_sets(principal.org_id, limits, principal.key_id, Limits())[0]
        try:
            requests, req_reset, tokens, tok_reset = await self._limiter.peek(scope)
        except REDIS_DOWN:
            return {}
        rpm, tpm = limits.rpm_limit or 0, limits.tpm_limit or 0
        return ratelimit_headers((rpm, rpm - requests, req_reset), (tpm, tpm - tokens, tok_reset))

    def _note_quota(self, principal: Principal, used: tuple[int, int, int]) -> None:
        # Three multiprocess gauge writes per request, for a figure Prometheus reads every 15 s:
        # they are written only once a share has moved by QUOTA_GAUGE_STEP since the last write,
        # so the gauge is never further than that from the truth.
        limits = principal.org_limits
        shares = tuple(value / limit if limit else None for value, limit in (
            (used[0], limits.daily_token_limit), (used[1], limits.daily_request_limit),
            (used[2], limits.monthly_token_limit)))
        last = self._quota_noted.get(principal.org_id)
        if last is not None and not any(map(_moved, shares, last)):
            return
        if len(self._quota_noted) >= TRACKED_MAX:
            self._quota_noted.clear()
        self._quota_noted[principal.org_id] = shares
        org = self._metrics.org(principal.org_id)
        for quota, share in zip(("daily_tokens", "daily_requests", "monthly_tokens"), shares):
            if share is not None:
                self._metrics.quota_ratio.labels(*org, quota).set(share)

    async def check(self) -> bool:
        """Ask Redis now, for readiness probes: each worker otherwise learns of an outage
        only from its own requests, and a probe may reach one that has not had any."""
        try:
            await self._limiter.ping()
        except REDIS_DOWN:
            self._went_down("health")
            return False
        self._came_back()
        return True

    def _refused(self, principal: Principal, code: str, retry_after_secs: int,
                 headers: dict[str, str]) -> RateLimited:
        """The 429 to raise, noted first among the organisation's latest refusals."""
        if self._rejections is not None:
            self._rejections.note(principal.org_id, principal.key_id, code, retry_after_secs)
        return RateLimited(code, retry_after_secs, headers)

    def _went_down(self, op: str) -> None:
        self._metrics.redis_errors.labels(op).inc()
        if not self.degraded:
            log.warning("redis unreachable: limiter degraded (fail_open=%s)", self._fail_open)
            self._metrics.limiter_degraded.set(1)
        self.degraded = True

    def _came_back(self) -> None:
        if self.degraded:
            log.warning("redis reachable again: limiter back to shared counters")
            self._metrics.limiter_degraded.set(0)
        self.degraded = False

    def _admit_locally(self, principal: Principal, reserve: int, request_id: str) -> Ticket:
        if not self._fail_open or principal.batch is not None:  # batch work can wait for Redis
            raise LimiterUnavailable("the rate limiter's store is unreachable; retry shortly")
        refused = self._local.admit(principal.org_id, principal.limits, reserve)
        if refused is not None:
            code, wait = refused
            raise self._refused(principal, code, max(1, int(wait + 0.999)), {})
        return Ticket(request_id, principal.org_id, principal.key_id, reserve, {}, None)

    def settle(self, ticket: Ticket, used: int) -> Awaitable[bool]:
        """Replace the reservation by what was used, free the leases, count usage. Idempotent;
        never raises (an answer already sent must not turn into an error).

        The settlement's command leaves for Redis now, before the caller sends the answer it
        settles; the returned awaitable waits for Redis's reply. So a client that sends its
        next request as soon as it has an answer finds its lease already free: at exactly its
        concurrency limit it is never refused. The awaitable says whether Redis took it
        (a batch line is answered only once it is billed)."""
        if ticket.done:
            return _nothing()
        ticket.done = True
        if ticket.reservation is None:
            self._local.release(ticket.org_id)
            return _nothing()
        self._running.pop(ticket.reservation.admission_id, None)
        return self._settled(ticket, self._limiter.settle(ticket.reservation, used, ticket.usage))

    async def _settled(self, ticket: Ticket, sent: Awaitable[None]) -> bool:
        try:
            with anyio.CancelScope(shield=True):
                await sent
            return True
        except REDIS_DOWN:
            # The leases expire by themselves; the reservation stays charged (never under-bills).
            self._went_down("settle")
            log.warning("settlement of %s failed; leases will expire", ticket.request_id)
            return False

    async def renew_forever(self) -> None:
        """Keep the leases of running requests alive; a worker that dies stops renewing them."""
        while True:
            await anyio.sleep(self._lease_secs / 3)
            try:
                await self._limiter.renew(self._still_running())
            except REDIS_DOWN:
                self._went_down("renew")

    def _still_running(self) -> list[Reservation]:
        """The reservations to renew. One older than MAX_REQUEST_SECS belongs to no request
        (every request is cut there): one whose settlement never came, say a stream answer
        built but never sent. It is dropped, and its leases expire by themselves."""
        oldest = self._clock() - self._max_request_secs - self._lease_secs
        stale = [rid for rid, res in self._running.items() if res.admitted_at < oldest]
        for rid in stale:
            del self._running[rid]
        if stale:
            log.warning("%d reservations outlived MAX_REQUEST_SECS unsettled; their leases "
                        "will expire", len(stale))
        return list(self._running.values())


async def _nothing() -> bool:
    return True
