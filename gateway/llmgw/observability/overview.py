"""The last hour per model, from the gateway's own metrics: requests and tokens per second,
the share of errors, and latency percentiles, for the console's overview (GET
/monitor/overview) when no Prometheus is at hand.

Every SAMPLE_EVERY_SECS each worker reads this instance's counters and latency histograms
(all its workers' summed, as /metrics shows them) and keeps the readings of the last hour;
the overview is the difference between now and the oldest of them. So it covers this gateway
instance (every replica answers for itself) and, just after a start, less than an hour: it
says how long. Percentiles are read off the histogram's buckets as Prometheus'
histogram_quantile does (linear within a bucket).
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

WINDOW_SECS = 3600.0
SAMPLE_EVERY_SECS = 60.0
QUANTILES = (0.5, 0.95, 0.99)


@dataclass
class Reading:
    """Cumulative figures per model at one moment."""
    at: float
    requests: dict[str, float] = field(default_factory=dict)
    errors: dict[str, float] = field(default_factory=dict)      # answered with a status >= 500
    refused: dict[str, float] = field(default_factory=dict)     # 4xx: limits, bad requests
    tokens: dict[str, float] = field(default_factory=dict)
    buckets: dict[str, dict[float, float]] = field(default_factory=dict)  # le -> count

    @classmethod
    def of(cls, families: Iterable, at: float) -> "Reading":
        r = cls(at)
        for family in families:
            for s in family.samples:
                model = s.labels.get("model")
                if model is None:
                    continue
                if s.name == "inference_requests_total":
                    status = s.labels.get("status", "")
                    _add(r.requests, model, s.value)
                    if status.startswith("5"):
                        _add(r.errors, model, s.value)
                    elif status.startswith("4"):
                        _add(r.refused, model, s.value)
                elif s.name == "tokens_processed_total":
                    _add(r.tokens, model, s.value)
                elif s.name == "inference_latency_seconds_bucket":
                    le = float(s.labels["le"])
                    per = r.buckets.setdefault(model, {})
                    per[le] = per.get(le, 0.0) + s.value
        return r


def _add(into: dict[str, float], key: str, value: float) -> None:
    into[key] = into.get(key, 0.0) + value


class Overview:
    def __init__(self, collect: Callable[[], Iterable], clock: Callable[[], float] = time.monotonic) -> None:
        self._collect, self._clock = collect, clock
        self._readings: deque[Reading] = deque()
        self._lock = threading.Lock()  # sampled by a background thread and by requests

    def sample(self) -> tuple[Reading, Reading]:
        """Read the metrics now; keep the reading if the last kept one is SAMPLE_EVERY_SECS
        old. Returns it, and the oldest kept (at most an hour old)."""
        reading = Reading.of(self._collect(), self._clock())
        with self._lock:
            if not self._readings or reading.at - self._readings[-1].at >= SAMPLE_EVERY_SECS:
                self._readings.append(reading)
            while len(self._readings) > 1 and reading.at - self._readings[1].at >= WINDOW_SECS:
                self._readings.popleft()
            return reading, self._readings[0]

    def report(self) -> dict:
        now, then = self.sample()
        secs = now.at - then.at
        models = sorted(set(now.requests) | set(now.tokens))
        rows = []
        for model in models:
            requests = now.requests.get(model, 0.0) - then.requests.get(model, 0.0)
            errors = now.errors.get(model, 0.0) - then.errors.get(model, 0.0)
            refused = now.refused.get(model, 0.0) - then.refused.get(model, 0.0)
            tokens = now.tokens.get(model, 0.0) - then.tokens.get(model, 0.0)
            buckets = {le: n - then.buckets.get(model, {}).get(le, 0.0)
                       for le, n in now.buckets.get(model, {}).items()}
            rows.append({"model": model, "requests": int(requests), "tokens": int(tokens),
                         "requests_per_s": _rate(requests, secs), "tokens_per_s": _rate(tokens, secs),
                         "error_rate": round(errors / requests, 4) if requests else None,
                         "refused_rate": round(refused / requests, 4) if requests else None,
                         **{f"latency_p{round(q * 100)}_s": quantile(q, buckets) for q in QUANTILES}})
        return {"window_secs": round(secs, 1), "models": rows}


def _rate(n: float, secs: float) -> float | None:
    return round(n / secs, 3) if secs > 0 else None


def quantile(q: float, buckets: dict[float, float]) -> float | None:
    """histogram_quantile over cumulative buckets (le -> count); None without observations."""
    bounds = sorted(buckets)
    if not bounds or buckets[bounds[-1]] <= 0:
        return None
    total = buckets[bounds[-1]]
    rank = q * total
    lower_bound, lower_count = 0.0, 0.0
    for le in bounds:
        count = buckets[le]
        if count >= rank:
            if math.isinf(le):
                return lower_bound  # above the highest finite bucket: its bound, as Prometheus
            if count == lower_count:
                return le
            return round(lower_bound + (le - lower_bound) * (rank - lower_count) / (count - lower_count), 4)
        lower_bound, lower_count = le, count
    return bounds[-1]
