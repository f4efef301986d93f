"""The per-worker stand-in limiter used while Redis is unreachable and the policy is fail-open.

Each worker enforces its share of every rate limit: the organisation's limit divided by the
number of workers times replicas. Daily and monthly quotas cannot be known without Redis and
are not enforced in the meantime (the metric and /healthz say so).
"""

from __future__ import annotations

from collections import defaultdict, deque
from collections.abc import Callable
from dataclasses import dataclass, field

from ..tenancy.limits import Limits

WINDOW = 60.0


@dataclass
class _OrgWindow:
    requests: deque = field(default_factory=deque)   # admission times
    tokens: deque = field(default_factory=deque)     # (time, tokens)
    in_flight: int = 0
    bucket: float | None = None
    bucket_ts: float = 0.0


class LocalLimiter:
    def __init__(self, share: int, clock: Callable[[], float]) -> None:
        self._share = max(1, share)
        self._clock = clock
        self._orgs: dict[str, _OrgWindow] = defaultdict(_OrgWindow)

    def _part(self, value: int | None) -> float | None:
        return None if value is None else max(1.0, value / self._share)

    def admit(self, org_id: str, limits: Limits, reserve: int) -> tuple[str, float] | None:
        """None when admitted; else (refusal code, seconds to wait)."""
        now, w = self._clock(), self._orgs[org_id]
        while w.requests and w.requests[0] <= now - WINDOW:
            w.requests.popleft()
        while w.tokens and w.tokens[0][0] <= now - WINDOW:
            w.tokens.popleft()
        conc, rpm, tpm = (self._part(limits.max_concurrent), self._part(limits.rpm_limit),
                          self._part(limits.tpm_limit))
        rps, burst = self._part(limits.rps), self._part(limits.burst)
        if conc is not None and w.in_flight >= conc:
            return "limit_concurrent", 1.0
        if rpm is not None and len(w.requests) >= rpm:
            return "limit_rpm", w.requests[0] + WINDOW - now
        if tpm is not None and sum(t for _, t in w.tokens) + reserve > tpm:
            return "limit_tpm", w.tokens[0][0] + WINDOW - now if w.tokens else WINDOW
        if rps is not None and burst is not None:
            tokens = burst if w.bucket is None else min(burst, w.bucket + (now - w.bucket_ts) * rps)
            if tokens < 1:
                return "limit_rps", (1 - tokens) / rps
            w.bucket, w.bucket_ts = tokens - 1, now
        w.requests.append(now)
        w.tokens.append((now, reserve))
        w.in_flight += 1
        return None

    def release(self, org_id: str) -> None:
        self._orgs[org_id].in_flight -= 1
