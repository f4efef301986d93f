"""The gateway's Prometheus metrics: names, labels and buckets, in one place.

Under gunicorn every worker writes its samples to PROMETHEUS_MULTIPROC_DIR and a scrape sums
them (prometheus-client's multiprocess mode; gunicorn.conf.py cleans a dead worker's files).
Label values are bounded: routes and models come from the routing table, never from clients.
"""

from __future__ import annotations

import functools
import os

from prometheus_client import (CollectorRegistry, Counter, Gauge, Histogram, generate_latest,
                               multiprocess)
from prometheus_client.metrics import MetricWrapperBase

from ..endpoints import ENDPOINTS

# LLM latencies run from milliseconds (embeddings) to minutes (long generations).
LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)
OVERHEAD_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1)
ROUTES = tuple(e.name for e in ENDPOINTS)  # inference routes, labelled by their table row
REASONS = ("limit_rps", "limit_rpm", "limit_tpm", "limit_concurrent", "limit_global_concurrent",
           "quota_daily_tokens", "quota_daily_requests", "quota_monthly_tokens", "bad_input",
           "invalid_api_key", "insufficient_scope", "org_suspended", "limiter_unavailable",
           "no_capacity")

# What decided a least_load choice (balancer.py): one backend had the fewest requests in flight
# from this worker; a tie broken by the backends' reported load; a tie broken at random, as
# some tied backend had no fresh figures.
# What decided a backend choice, by policy: a bound request went to its key's first choice, to
# a backend it spilled to lately, or spilled past the load bound; an unbound one of a prefix or
# session pool went to the least work (placement/policy.py).
_BY_LOAD = ("least_in_flight", "backend_load", "fallback_own_counts")
_PLACED = ("affinity", "learned", "spilled", "least_work")
ROUTING_REASONS = {"least_load": _BY_LOAD, "random": ("random",),
                   "prefix": _PLACED, "session": _PLACED}


class Metrics:
    """Every metric the gateway exports. One instance per worker, built in the lifespan."""

    def __init__(self, *, tenant_labels: bool, registry: CollectorRegistry | None = None) -> None:
        reg = registry or CollectorRegistry(auto_describe=True)
        self.registry = reg
        self.tenant_labels = tenant_labels
        org = ("org",) if tenant_labels else ()
        self.requests = Counter("inference_requests_total", "Requests answered, by status",
                                ("route", "model", *org, "status"), registry=reg)
        self.latency = Histogram("inference_latency_seconds", "End-to-end latency",
                                 ("route", "model"), buckets=LATENCY_BUCKETS, registry=reg)
        self.tokens = Counter("tokens_processed_total", "Tokens billed, input and output",
                              (*org, "model", "type"), registry=reg)
        self.batch_tokens = Counter("llmgw_batch_tokens_total", "Tokens billed to batch lines",
                                    (*org, "model", "type"), registry=reg)
        self.ttft = Histogram("llmgw_time_to_first_token_seconds", "Time to the first streamed event",
                              ("route", "model"), buckets=LATENCY_BUCKETS, registry=reg)
        self.upstream = Histogram("llmgw_upstream_latency_seconds", "Backend time to answer (or to headers, streaming)",
                                  ("backend", "route"), buckets=LATENCY_BUCKETS, registry=reg)
        self.overhead = Histogram("llmgw_gateway_overhead_seconds", "Time spent in the gateway itself",
                                  ("route",), buckets=OVERHEAD_BUCKETS, registry=reg)
        self.rejections = Counter("llmgw_rejections_total", "Requests refused before a backend",
                                  (*org, "reason"), registry=reg)
        self.in_flight = Gauge("llmgw_requests_in_flight", "Requests being served",
                               ("route",), multiprocess_mode="livesum", registry=reg)
        self.queue_depth = Gauge("llmgw_queue_depth", "Requests waiting for backend capacity",
                                 ("pool",), multiprocess_mode="livesum", registry=reg)
        self.queue_wait = Histogram("llmgw_queue_wait_seconds", "Time waited for backend capacity",
                                    ("pool",), buckets=LATENCY_BUCKETS, registry=reg)
        self.backend_up = Gauge("llmgw_backend_up", "1 while the backend passes health checks",
                                ("backend", "pool"), multiprocess_mode="livemax", registry=reg)
        self.breaker = Gauge("llmgw_circuit_breaker_state", "0 closed, 1 half-open, 2 open",
                             ("backend",), multiprocess_mode="livemax", registry=reg)
        self.retries = Counter("llmgw_retries_total", "Retries sent to another backend",
                               ("pool", "reason"), registry=reg)
        self.cache = Counter("llmgw_cache_requests_total", "Response cache lookups",
                             ("route", "result"), registry=reg)
        self.redis_errors = Counter("llmgw_redis_errors_total", "Redis calls that failed",
                                    ("op",), registry=reg)
        self.limiter_degraded = Gauge("llmgw_limiter_degraded", "1 while the limiter cannot reach Redis",
                                      multiprocess_mode="livemax", registry=reg)
        self.quota_ratio = Gauge("llmgw_quota_usage_ratio", "Share of a quota used",
                                 (*org, "quota"), multiprocess_mode="livemax", registry=reg)
        self._backend_state(reg)
        for metric in [m for m in vars(self).values() if isinstance(m, MetricWrapperBase)]:
            # labels() validates and locks on every call (about 10 µs); a request makes a
            # dozen such calls. Children never change once made, so remember them.
            metric.labels = functools.lru_cache(maxsize=4096)(metric.labels)

    def _backend_state(self, reg: CollectorRegistry) -> None:
        """The state view (backend_state/): each backend's figures as a worker sees them, NaN
        when it has none fresh; the latest write of any live worker wins."""
        labels = ("backend", "pool")

        def figure(name: str, doc: str) -> Gauge:
            return Gauge(name, doc, labels, multiprocess_mode="livemostrecent", registry=reg)

        self.backend_running = figure("llmgw_backend_requests_running",
                                      "Requests the backend reports running (vllm:num_requests_running)")
        self.backend_waiting = figure("llmgw_backend_requests_waiting",
                                      "Requests the backend reports waiting (vllm:num_requests_waiting)")
        self.backend_kv_usage = figure("llmgw_backend_kv_cache_usage",
                                       "KV cache usage the backend reports, 0 to 1")
        self.backend_prefix_hit_ratio = figure("llmgw_backend_prefix_cache_hit_ratio",
                                               "Prefix cache hits per queried token, between scrapes")
        self.backend_state_age = Gauge("llmgw_backend_state_age_seconds",
                                       "Age of the backend's figures in the stalest worker's view",
                                       labels, multiprocess_mode="livemax", registry=reg)
        self.backend_scrape_failures = Counter("llmgw_backend_state_scrape_failures_total",
                                               "Scrapes of the backend's /metrics that failed",
                                               labels, registry=reg)
        self.routing_decisions = Counter("llmgw_routing_decisions_total",
                                         "Backend choices, by pool, policy and what decided them",
                                         ("pool", "policy", "reason"), registry=reg)

    def prime(self, pools: dict[str, list[str]], policies: dict[str, str] | None = None) -> None:
        """Create the label sets known at start, so dashboards show zeros rather than gaps.
        `policies` names each pool's routing policy (least_load when not given)."""
        for pool, backends in pools.items():
            policy = (policies or {}).get(pool, "least_load")
            self.queue_depth.labels(pool)
            self.queue_wait.labels(pool)
            for reason in ("connect", "timeout", "status"):
                self.retries.labels(pool, reason)
            for reason in ROUTING_REASONS[policy]:
                self.routing_decisions.labels(pool, policy, reason)
            for backend in backends:
                self.breaker.labels(backend).set(0)
                self.backend_scrape_failures.labels(backend, pool)
        for route in ROUTES:
            self.in_flight.labels(route)
            for result in ("hit", "miss"):
                self.cache.labels(route, result)
        for op in ("auth", "admit", "admit_busy", "settle", "renew"):
            self.redis_errors.labels(op)
        self.limiter_degraded.set(0)

    def org(self, org_id: str | None) -> tuple[str, ...]:
        """The org label value (or none at all when METRICS_TENANT_LABELS=off)."""
        return (org_id or "-",) if self.tenant_labels else ()


    def exposition(self) -> bytes:
        """All workers' samples, summed (or this process's alone, outside gunicorn)."""
        return generate_latest(self._summed())

    def families(self):
        """The same samples, as metric families (overview.py reads them)."""
        return self._summed().collect()

    def _summed(self) -> CollectorRegistry:
        if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            return self.registry
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return registry
