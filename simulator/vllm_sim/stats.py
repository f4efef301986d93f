"""Simulator-side request accounting served at /sim/stats (what the tests and benches observe)."""

from __future__ import annotations

from collections import Counter


class Stats:
    """Counts per endpoint and per outcome; /sim/* requests are not counted."""

    def __init__(self):
        self.reset()

    def reset(self):
        # in_flight is live state, not history: a reset must not make it go negative later.
        self.in_flight = getattr(self, "in_flight", 0)
        self.by_endpoint: Counter = Counter()
        self.total = 0
        self.completed = 0  # inference requests answered successfully
        self.aborted = 0  # client went away before the answer was complete
        self.injected_errors = 0
        self.dropped = 0  # connection closed on purpose (drop_after_tokens)
        self.hung = 0  # requests that hit the hang fault
        self.rejected_loading = 0
        self.priorities: Counter = Counter()  # generation requests by the `priority` they carried

    def snapshot(self, running: int, waiting: int, max_num_seqs: int) -> dict:
        return {
            "total_requests": self.total,
            "by_endpoint": dict(self.by_endpoint),
            "in_flight": self.in_flight,
            "running": running,
            "waiting": waiting,
            "max_num_seqs": max_num_seqs,
            "completed": self.completed,
            "aborted": self.aborted,
            "injected_errors": self.injected_errors,
            "dropped": self.dropped,
            "hung": self.hung,
            "rejected_loading": self.rejected_loading,
            "priorities": {str(k): v for k, v in sorted(self.priorities.items())},
        }
