"""Routing decisions reach Prometheus in batches: nothing per request, everything per round."""

from prometheus_client import CollectorRegistry

from llmgw.observability.decision_counts import DecisionCounts
from llmgw.observability.metrics import Metrics
from llmgw.placement.policy import PlacementPolicy
from llmgw.routing import Pool


def _value(registry: CollectorRegistry, reason: str) -> float | None:
    return registry.get_sample_value("llmgw_routing_decisions_total",
                                     {"pool": "chat", "policy": "prefix", "reason": reason})


def test_decisions_are_written_once_per_flush_and_none_is_lost():
    metrics = Metrics(tenant_labels=False, registry=CollectorRegistry())
    counts = DecisionCounts(metrics.routing_decisions)
    pool = Pool("chat", (), PlacementPolicy(name="prefix"))
    for _ in range(5):
        counts.note(pool, "affinity")
    counts.note(pool, "spilled")
    assert _value(metrics.registry, "affinity") in (None, 0.0)  # not yet written
    counts.flush()
    assert _value(metrics.registry, "affinity") == 5 and _value(metrics.registry, "spilled") == 1
    counts.note(pool, "affinity")
    counts.flush()
    counts.flush()  # an empty round writes nothing more
    assert _value(metrics.registry, "affinity") == 6
