"""Choosing a backend within a pool, by the pool's policy among the backends that can serve
(eligible, with a free slot): by default the fewest requests in flight, ties broken by the
backends' reported load when fresh, else at random."""

from __future__ import annotations

import random
import time
from collections.abc import Callable

from .placement.holders import KeyHolders
from .placement.policy import Placement, choose, rank_score
from .routing import Backend, Pool


class LeastInFlightBalancer:
    """Least-outstanding-requests balancing, and the bound policies (placement/policy.py).

    Counts are per worker process: cheap, lock-free on the event loop, and with several
    workers each one still spreads its own share evenly. A tie (common: each worker sees
    only its own requests) goes to the backend reporting the least running + waiting
    (`reported`, from the state view: every worker's and replica's requests), but only when
    every tied backend has fresh figures; otherwise, and without a view, at random, which keeps
    idle pools from sending every first request to the same backend. Own counts stay first:
    figures up to an interval old would send every worker to the same backend at once.

    A request bound by a key (prefix or session policy) goes to its key's backend, or to one
    this worker spilled the key to lately (KeyHolders), unless those are much busier than the
    others; its load is the larger of this worker's in-flight
    count and the backend's fresh report. `on_decision(pool, reason)` hears what decided each
    choice (ROUTING_REASONS).
    """

    def __init__(self, rng: random.Random | None = None,
                 eligible: Callable[[Backend], bool] | None = None, *, bounded: bool = False,
                 on_release: Callable[[Backend], None] | None = None,
                 reported: Callable[[str], float | None] | None = None,
                 on_decision: Callable[[Pool, str], None] | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._rng = rng or random.Random()
        self._eligible = eligible or (lambda _b: True)
        self._reported = reported or (lambda _name: None)
        self._on_decision = on_decision or (lambda _pool, _reason: None)
        # bounded: at most max_num_seqs requests per backend from this worker; unbounded, a
        # backend's own queue absorbs the excess.
        self._bounded = bounded
        self._on_release = on_release or (lambda _b: None)
        self._clock = clock
        self._holders: dict[str, KeyHolders] = {}  # per pool: where bound keys spilled

    def capacity(self, backend: Backend) -> int:
        """How many requests this worker may have in flight on the backend."""
        return backend.max_num_seqs if self._bounded else 1 << 30

    def available(self, pool: Pool, exclude: frozenset[str] = frozenset()) -> bool:
        """Could any backend serve, were it not full? (healthy, breaker not open)"""
        return any(b.name not in exclude and self._eligible(b) for b in pool.backends)

    def eligible(self, backend: Backend) -> bool:
        return self._eligible(backend)

    def pick(self, pool: Pool, exclude: frozenset[str] = frozenset(),
             placement: Placement | None = None) -> Backend | None:
        """The backend for the next attempt, or None if none can serve now. With a
        `placement` (a prefix or session pool), its key's backend unless that is much busier
        than the others, or (no key) the one with the least work; without, the one with the
        fewest requests in flight."""
        if placement is not None or pool.policy.name == "random":
            return self._pick_placed(pool, exclude, placement)
        best: list[Backend] = []
        lowest = None
        for backend in pool.backends:
            if backend.name in exclude or backend.in_flight >= self.capacity(backend) \
                    or not self._eligible(backend):
                continue
            if lowest is None or backend.in_flight < lowest:
                best, lowest = [backend], backend.in_flight
            elif backend.in_flight == lowest:
                best.append(backend)
        if not best:
            return None
        if len(best) == 1:
            self._on_decision(pool, "least_in_flight")
            return best[0]
        return self._tie(pool, best)

    def _pick_placed(self, pool: Pool, exclude: frozenset[str],
                     placement: Placement | None) -> Backend | None:
        free = [b for b in pool.backends if b.name not in exclude
                and b.in_flight < self.capacity(b) and self._eligible(b)]
        if not free:
            return None
        if placement is None:
            self._on_decision(pool, "random")
            return self._rng.choice(free)
        work = self._work(pool)
        if placement.key is None:
            self._on_decision(pool, "least_work")
            return self._least_work(free, work)
        backend, reason = choose(free, placement.key, pool.policy, self._load,
                                 self._holders_of(pool).of(placement.key), work)
        self._on_decision(pool, reason)
        return backend

    def _least_work(self, free: list[Backend], work: Callable[[Backend], float]) -> Backend:
        """The backend with the least work; a tie to the least reported load, then at random."""
        lowest, tied = None, []
        for backend in free:
            amount = work(backend)
            if lowest is None or amount < lowest:
                lowest, tied = amount, [backend]
            elif amount == lowest:
                tied.append(backend)
        if len(tied) == 1:
            return tied[0]
        return min(tied, key=lambda b: (self._reported(b.name) or 0, self._rng.random()))

    def _holders_of(self, pool: Pool) -> KeyHolders:
        holders = self._holders.get(pool.name)
        if holders is None:
            holders = self._holders[pool.name] = KeyHolders(clock=self._clock)
        return holders

    @staticmethod
    def _work(pool: Pool) -> Callable[[Backend], float]:
        """This worker's estimate of what a backend has to do: the prompt tokens it still has
        to prefill, plus `slot_tokens` per request in flight."""
        slot = pool.policy.slot_tokens
        return lambda b: b.prefill_pending + slot * b.in_flight

    def _load(self, backend: Backend) -> float:
        reported = self._reported(backend.name)
        return backend.in_flight if reported is None else max(backend.in_flight, reported)

    def _tie(self, pool: Pool, tied: list[Backend]) -> Backend:
        """The tied backend reporting the least load, or a random one without fresh figures."""
        loads = [self._reported(b.name) for b in tied]
        if None in loads:
            self._on_decision(pool, "fallback_own_counts")
            return self._rng.choice(tied)
        self._on_decision(pool, "backend_load")
        lowest = min(loads)
        least = [b for b, load in zip(tied, loads) if load == lowest]
        return least[0] if len(least) == 1 else self._rng.choice(least)

    def take(self, backend: Backend, pool: Pool | None = None,
             placement: Placement | None = None) -> int:
        """Take a slot on the chosen backend; its prefill estimate for this request (0
        without a placement), which `prefilled` or `release` gives back."""
        backend.in_flight += 1
        if placement is None or pool is None:
            return 0
        held = placement.key is not None and self._holds(pool, backend, placement.key)
        prefill = placement.prefill(held)
        backend.prefill_pending += prefill
        return prefill

    def _holds(self, pool: Pool, backend: Backend, key: int) -> bool:
        """Does the backend hold the key's prefix: its first choice among the eligible, or a
        backend the key went to lately? It will from now on (KeyHolders)."""
        holders = self._holders_of(pool)
        eligible = [b for b in pool.backends if self._eligible(b)]
        if backend is max(eligible, key=lambda b: rank_score(key, b), default=None):
            return True
        held = backend.name in holders.of(key)
        holders.note(key, backend.name)
        return held

    @staticmethod
    def prefilled(backend: Backend, prefill: int) -> None:
        """The backend's first token came: this request's prefill is done."""
        backend.prefill_pending -= prefill

    def release(self, backend: Backend, prefill: int = 0) -> None:
        """A slot came free (with what is left of its prefill estimate): the admission
        queue may hand it on."""
        backend.in_flight -= 1
        backend.prefill_pending -= prefill
        self._on_release(backend)
