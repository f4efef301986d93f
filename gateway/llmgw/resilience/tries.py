"""One request's tries across its pool: the backends it went to, and what a 5xx allows next."""

from __future__ import annotations

import math

from ..errors import BackendUnavailable, GatewayError
from ..placement.policy import Placement
from ..routing import Backend, Model
from .retry import RetryableFailure
from .selector import BackendSelector


class TryLimits:
    """How long one try may wait while another sound backend could take over (failover).

    A stream's head comes as soon as vLLM has queued the request, so a head missing for
    `stream_head` seconds means a hung backend. A non-streaming answer's head comes only with
    its last token, so a hang looks like a long generation: `answer` must exceed the longest
    legitimate one. The last backend left gets what remains of the one deadline, as before.
    """

    def __init__(self, *, stream_head: float, answer: float) -> None:
        self.stream_head, self.answer = stream_head, answer

    def cap(self, stream: bool, failover_left: bool) -> float:
        if not failover_left:
            return math.inf
        return self.stream_head if stream else self.answer


class Tries:
    """Where one request's attempts went, so that a retry goes where it may help.

    A 5xx is retried only on a backend this request has not tried yet, and only the request's
    first 5xx counts against a breaker. A request that reliably makes backends fail (a
    "poison" request) would otherwise fail again on the same replica, count once per attempt,
    and with a few such requests open the breakers of a whole pool: every tenant of the
    model would get 503 for one client's requests. A 5xx on a second replica points at the
    request more than at that replica, so it is not counted.

    Transport failures (refused, dropped, silent) may still go back to any backend not ruled
    out by a 5xx: a dropped keep-alive connection is the usual cause, a refused backend
    leaves rotation by itself, and a silent one uses up the request's deadline in one try.
    """

    def __init__(self, selector: BackendSelector, model: Model, org: str | None,
                 placement: Placement | None = None) -> None:
        self._selector, self._model, self._org = selector, model, org
        self._placement = placement  # places it by its pool's policy (placement/policy.py)
        self._tried: set[str] = set()
        self._ruled_out: frozenset[str] = frozenset()  # tried before this request's last 5xx
        self._failed: GatewayError | None = None  # that 5xx, as the client would see it

    async def acquire(self) -> tuple[Backend, int]:
        """A backend for the next attempt, its slot taken, untried ones first; and the
        request's prefill estimate there."""
        try:
            backend, prefill = await self._selector.acquire(
                self._model, self._org, frozenset(self._tried), self._ruled_out, self._placement)
        except BackendUnavailable:
            if self._failed is None:
                raise
            # The untried backends left rotation or stayed full since the 5xx: that 5xx is
            # the request's answer, not the pool's state.
            raise self._failed from None
        self._tried.add(backend.name)
        return backend, prefill

    def failover_left(self) -> bool:
        """Could the next attempt go to a sound backend this request has not tried? A retry
        there is failover (free of the retry budget) and the current try may be cut short
        (FAILOVER_*_SECS), as another backend is there to take over."""
        return self._selector.sound_left(self._model, frozenset(self._tried) | self._ruled_out)

    def status_failure(self, backend: Backend, failure: RetryableFailure) -> Exception:
        """`backend` answered a 5xx: counted if it is the request's first; what to raise next
        is the failure while an untried backend could serve, else the answer for the client."""
        breakers = self._selector.breakers
        self._selector.suspects.failed(backend.name)  # every 5xx: no free retries onto it
        if self._failed is None:
            breakers.failure(backend.name)
        else:
            breakers.abandon(backend.name)  # not counted: a half-open breaker's trial is free
        self._failed = failure.error
        self._ruled_out = frozenset(self._tried)
        if self._selector.balancer.available(self._model.pool, self._ruled_out):
            return failure
        return failure.error
