"""Routing decisions tallied in the worker's memory, added to Prometheus once a health round.

A multiprocess counter's inc() writes its mmap'd file under a lock (a struct pack and a
getpid among a dozen Python calls); a backend choice is made on every request, so the
choices are counted here and `flush` adds them to `llmgw_routing_decisions_total` after each
round of health probes (every HEALTH_CHECK_INTERVAL_SECS), far more often than Prometheus
scrapes.
"""

from __future__ import annotations

from prometheus_client import Counter

from ..routing import Pool


class DecisionCounts:
    def __init__(self, counter: Counter) -> None:
        self._counter = counter
        self._tally: dict[tuple[str, str, str], int] = {}

    def note(self, pool: Pool, reason: str) -> None:
        key = (pool.name, pool.policy.name, reason)
        self._tally[key] = self._tally.get(key, 0) + 1

    def flush(self) -> None:
        tally, self._tally = self._tally, {}
        for labels, count in tally.items():
            self._counter.labels(*labels).inc(count)
