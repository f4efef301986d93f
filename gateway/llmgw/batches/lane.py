"""The batch lane, in the gateway: who a runner's line runs as, whether it may start, and when
it must stop.

A runner presents BATCH_RUNNER_TOKEN, the line it runs and the digest of the key that created
its job; the line then runs as that key (its organisation's quotas, its model access) but on
the batch lane: its own concurrency (MAX_CONCURRENT_BATCH), billed once per line.

- It starts only where a backend has room realtime does not need (`check_room`): nothing
  waiting there, fewer than BATCH_CAPACITY_SHARE of its max_num_seqs running; refused at once
  otherwise (503 no_spare_capacity), so the runner backs off.
- It stops when realtime needs the room back (`preempt`): while this worker holds batch calls
  on a backend, the scraper reads that backend every BATCH_WATCH_SECS; once its requests
  (running and waiting) pass the preemption line, halfway from the start line to full, the
  youngest batch calls there are aborted (vLLM frees their slots when the connection closes)
  and answer 503 preempted; the runner runs those lines again later, unbilled.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections import defaultdict, deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TypeVar

import anyio
from pydantic import SecretStr

from ..admin_token import matches
from ..backend_state import StateView
from ..errors import InvalidApiKey, InvalidRequest, NoSpareCapacity, PermissionDenied, Preempted
from ..observability.trace import Trace
from ..routing import Backend, Model
from ..tenancy.auth import Authenticator, Principal
from ..tenancy.records import KeyScope
from .item import BATCH_KEY_HEADER, BatchItem

T = TypeVar("T")
# vLLM's `priority` (lower runs first; 0 by default) of batch lines on pools whose servers
# schedule by priority: behind every realtime request, which may ask for 0 up to just below.
BATCH_BACKEND_PRIORITY = 1 << 20


@dataclass(eq=False)
class BatchCall:
    """A batch line's backend call in this worker; `trace.backend` is where it runs."""
    trace: Trace
    started: float
    scope: anyio.CancelScope = field(default_factory=anyio.CancelScope)


class BatchLane:
    def __init__(self, auth: Authenticator, state: StateView, *, token: SecretStr | None,
                 share: float, eligible: Callable[[Backend], bool], most: int,
                 processes: int = 1, watch_secs: float = 0.1,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._auth, self._state, self._token = auth, state, token
        self._share, self._eligible, self._most = share, eligible, most
        self._processes, self.watch_secs, self._clock = processes, watch_secs, clock
        self._calls: set[BatchCall] = set()
        # When this worker let batch lines start, and saw them end, on each backend (recent
        # ones only): what happened since the figures were read is not in them yet.
        self._starts: dict[str, deque[float]] = defaultdict(deque)
        self._ends: dict[str, deque[float]] = defaultdict(deque)

    async def principal(self, token: str | None, item_header: str, headers) -> Principal:
        """The job's key as a principal on the batch lane; 401 without the runner's token."""
        if not matches(token, self._token):
            raise InvalidApiKey()
        item = BatchItem.parse(item_header)
        key_digest = headers.get(BATCH_KEY_HEADER) or ""
        if item is None or len(key_digest) != 64:
            raise InvalidApiKey("Invalid batch line: malformed batch headers.")
        principal = await self._auth.authenticate_digest(key_digest)
        if principal.org_id != item.org_id:
            raise InvalidApiKey("Invalid batch line: the key is not the job's organisation's.")
        principal.require(KeyScope.BATCH)
        return dataclasses.replace(principal, batch=item)

    def check_room(self, model: Model) -> None:
        """NoSpareCapacity unless some sound backend of the model has nothing waiting and runs
        fewer than its share of max_num_seqs. The figures are the backend's own (from every
        gateway worker and replica) when fresh; this worker's count is a floor between scrapes.
        Without fresh figures (the view off or failing), only this worker's count is known."""
        if self._most <= 0:
            raise NoSpareCapacity(model.name)  # MAX_CONCURRENT_BATCH=0: batch work is off
        for backend in model.pool.backends:
            if self._eligible(backend) and self._has_room(backend):
                self._starts[backend.name].append(self._clock())
                return
        raise NoSpareCapacity(model.name)

    def _has_room(self, backend: Backend) -> bool:
        """Room by the backend's figures, counting the lines started since they were read as
        if every gateway process had started as many (a burst of lines on one reading never
        overfills a backend), and the lines this worker saw end since then as gone (so the
        runner's next line takes the slot its last one left, without waiting for a scrape)."""
        room = self._share * backend.max_num_seqs
        state = self._state.fresh(backend.name)
        if state is None:
            return not self._state.enabled and backend.in_flight < room
        started = _since(self._starts[backend.name], state.scraped_at)
        ended = _since(self._ends[backend.name], state.scraped_at)
        running = max((state.running or 0) - ended, backend.in_flight) + started * self._processes
        return not state.waiting and running + 1 <= room

    def preemptible(self, call: Callable[[], Awaitable[T]], trace: Trace) -> Callable[[], Awaitable[T]]:
        """`call`, registered while it runs so `preempt` can abort it (then: Preempted)."""
        async def run() -> T:
            entry = BatchCall(trace, self._clock())
            self._calls.add(entry)
            try:
                with entry.scope:
                    return await call()
                raise Preempted(trace.backend or "its backend")  # the scope caught our cancel
            finally:
                self._calls.discard(entry)
                if trace.backend:
                    ends, now = self._ends[trace.backend], self._clock()
                    ends.append(now)
                    _since(ends, now - self._state.stale_after)  # older ones never count
        return run

    def watching(self, backend: str) -> bool:
        """Does this worker hold batch calls on `backend` (so the scraper reads it often)?"""
        return any(c.trace.backend == backend for c in self._calls)

    def preempt(self, backend: Backend) -> int:
        """After a fresh scrape of `backend`: abort this worker's share of the batch calls
        over the preemption line there, youngest first. Returns how many."""
        state = self._state.fresh(backend.name)
        if state is None:
            return 0
        line = backend.max_num_seqs * (1 + self._share) / 2
        over = (state.running or 0) + (state.waiting or 0) - line
        if over <= 0:
            return 0
        mine = sorted((c for c in self._calls if c.trace.backend == backend.name
                       and not c.scope.cancel_called), key=lambda c: c.started, reverse=True)
        # Every gateway process sees the same figures: each stops its share of the excess.
        stop = mine[:math.ceil(over / self._processes)]
        for call in stop:
            call.scope.cancel()
        return len(stop)


def _since(times: deque[float], when: float) -> int:
    """How many of `times` (in order) are at or after `when`; older ones are dropped."""
    while times and times[0] < when:
        times.popleft()
    return len(times)


def check_priority(principal: Principal, body: dict) -> None:
    """Set or check the `priority` a request carries to a pool scheduling by priority: a
    batch line gets BATCH_BACKEND_PRIORITY; a realtime client may lower its own request's
    (0, vLLM's default, up to just below batch's) but not raise it above anyone's (400)."""
    if principal.batch is not None:
        body["priority"] = BATCH_BACKEND_PRIORITY
        return
    given = body.get("priority", 0)
    if isinstance(given, bool) or not isinstance(given, int) \
            or not 0 <= given < BATCH_BACKEND_PRIORITY:
        raise InvalidRequest(f"priority must be an integer from 0 (the default: first) to "
                             f"{BATCH_BACKEND_PRIORITY - 1}", param="priority")


def require_batch_scope(principal: Principal, scope: KeyScope) -> None:
    """A batch line needs the batch scope (checked when it was let in), not the endpoint's:
    seeds 001/004 give batch work to keys that hold `batch` alone."""
    if principal.batch is None:
        principal.require(scope)
    elif KeyScope.BATCH not in principal.scopes:
        raise PermissionDenied("this API key lacks the 'batch' scope")
