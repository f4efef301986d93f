"""The gateway's metrics: label sets created at start (zeros, not gaps), the org label only
with tenant labels, children remembered, and the exposition of this process's samples."""

from __future__ import annotations

import pytest

from llmgw.observability.metrics import ROUTES, ROUTING_REASONS, Metrics


def _value(metrics: Metrics, name: str, labels: dict | None = None) -> float | None:
    return metrics.registry.get_sample_value(name, labels or {})


@pytest.mark.parametrize("tenant_labels,org,expected", [
    (True, "org_a", ("org_a",)), (True, None, ("-",)), (False, "org_a", ()),
])
def test_the_org_label_only_with_tenant_labels(tenant_labels, org, expected):
    assert Metrics(tenant_labels=tenant_labels).org(org) == expected


def test_tenant_labels_change_the_label_names():
    with_org, without = Metrics(tenant_labels=True), Metrics(tenant_labels=False)
    with_org.tokens.labels("org_a", "Qwen", "input").inc(5)
    without.tokens.labels("Qwen", "input").inc(5)
    assert _value(with_org, "tokens_processed_total", {"org": "org_a", "model": "Qwen", "type": "input"}) == 5
    assert _value(without, "tokens_processed_total", {"model": "Qwen", "type": "input"}) == 5
    with pytest.raises(ValueError):
        without.tokens.labels("org_a", "Qwen", "input")


def test_priming_creates_the_known_label_sets_at_zero():
    metrics = Metrics(tenant_labels=False)
    metrics.limiter_degraded.set(1)
    metrics.prime({"chat": ["chat0", "chat1"], "embed": ["embed"]}, {"chat": "prefix"})
    assert _value(metrics, "llmgw_circuit_breaker_state", {"backend": "chat1"}) == 0
    assert _value(metrics, "llmgw_backend_state_scrape_failures_total",
                  {"backend": "embed", "pool": "embed"}) == 0
    assert _value(metrics, "llmgw_retries_total", {"pool": "chat", "reason": "timeout"}) == 0
    assert _value(metrics, "llmgw_queue_depth", {"pool": "embed"}) == 0
    for pool, policy in (("chat", "prefix"), ("embed", "least_load")):  # least_load when not named
        for reason in ROUTING_REASONS[policy]:
            assert _value(metrics, "llmgw_routing_decisions_total",
                          {"pool": pool, "policy": policy, "reason": reason}) == 0
    assert _value(metrics, "llmgw_routing_decisions_total",
                  {"pool": "chat", "policy": "least_load", "reason": "least_in_flight"}) is None
    for route in ROUTES:
        assert _value(metrics, "llmgw_requests_in_flight", {"route": route}) == 0
        assert _value(metrics, "llmgw_cache_requests_total", {"route": route, "result": "miss"}) == 0
    assert _value(metrics, "llmgw_redis_errors_total", {"op": "settle"}) == 0
    assert _value(metrics, "llmgw_limiter_degraded") == 0


def test_children_are_remembered_and_still_count():
    metrics = Metrics(tenant_labels=False)
    child = metrics.retries.labels("chat", "connect")
    assert metrics.retries.labels("chat", "connect") is child
    child.inc()
    metrics.retries.labels("chat", "connect").inc()
    assert _value(metrics, "llmgw_retries_total", {"pool": "chat", "reason": "connect"}) == 2


def test_two_workers_metrics_are_separate_registries():
    one, two = Metrics(tenant_labels=False), Metrics(tenant_labels=False)  # no duplicate error
    one.cache.labels("chat", "hit").inc()
    assert _value(two, "llmgw_cache_requests_total", {"route": "chat", "result": "hit"}) is None


def test_the_exposition_is_this_processs_samples_outside_gunicorn(monkeypatch):
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)
    metrics = Metrics(tenant_labels=True)
    metrics.requests.labels("chat", "Qwen", "org_a", "200").inc(3)
    text = metrics.exposition().decode()
    assert 'inference_requests_total{model="Qwen",org="org_a",route="chat",status="200"} 3.0' in text
    names = {f.name for f in metrics.families()}
    assert {"inference_requests", "llmgw_backend_requests_running", "llmgw_routing_decisions"} <= names
