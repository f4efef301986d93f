"""The console's last-hour overview from the gateway's own metrics: rates, error and refusal
shares and latency percentiles per model, as differences between readings at most an hour
apart; percentiles as Prometheus' histogram_quantile reads buckets."""

from __future__ import annotations

import math

import pytest

from llmgw.observability.metrics import Metrics
from llmgw.observability.overview import SAMPLE_EVERY_SECS, WINDOW_SECS, Overview, quantile


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _served(m: Metrics, model: str, status: str, secs: float, tokens: int = 0) -> None:
    m.requests.labels("chat", model, status).inc()
    if status == "200":
        m.latency.labels("chat", model).observe(secs)
        m.tokens.labels(model, "output").inc(tokens)


def test_the_report_covers_what_happened_since_the_oldest_reading_within_the_hour():
    m, clock = Metrics(tenant_labels=False), Clock()
    overview = Overview(m.families, clock)
    _served(m, "old", "200", 9.0, 5)          # before the first reading: not in any report
    overview.sample()
    for secs in (0.02, 0.03, 0.2, 0.3, 0.4, 0.7, 0.8, 1.5, 2.0, 4.0):
        _served(m, "qwen", "200", secs, 10)
    _served(m, "qwen", "503", 0)
    _served(m, "qwen", "429", 0)
    clock.now = 100.0
    report = overview.report()
    assert report["window_secs"] == 100.0
    rows = {r["model"]: r for r in report["models"]}
    qwen = rows["qwen"]
    assert (qwen["requests"], qwen["tokens"]) == (12, 100)
    assert qwen["requests_per_s"] == 0.12 and qwen["tokens_per_s"] == 1.0
    assert qwen["error_rate"] == round(1 / 12, 4) and qwen["refused_rate"] == round(1 / 12, 4)
    assert 0.25 <= qwen["latency_p50_s"] <= 0.5 and 2.5 <= qwen["latency_p95_s"] <= 5
    assert rows["old"]["requests"] == 0 and rows["old"]["latency_p50_s"] is None


def test_readings_older_than_the_hour_are_dropped():
    m, clock = Metrics(tenant_labels=False), Clock()
    overview = Overview(m.families, clock)
    for minute in range(0, 125):
        clock.now = minute * SAMPLE_EVERY_SECS
        _served(m, "qwen", "200", 0.1)
        overview.sample()
    report = overview.report()
    assert WINDOW_SECS <= report["window_secs"] < WINDOW_SECS + SAMPLE_EVERY_SECS
    assert report["models"][0]["requests"] == report["window_secs"] // SAMPLE_EVERY_SECS


@pytest.mark.parametrize("q", [0.25, 0.5, 0.99])
def test_quantiles_interpolate_within_a_bucket(q):
    buckets = {0.5: 0.0, 1.0: 4.0, math.inf: 4.0}  # cumulative: all 4 in (0.5, 1]
    assert quantile(q, buckets) == pytest.approx(0.5 + 0.5 * q)
    assert quantile(0.5, {1.0: 0.0, math.inf: 0.0}) is None
    assert quantile(0.99, {1.0: 1.0, math.inf: 10.0}) == 1.0  # past the last finite bound
