"""Writes the Grafana dashboards under monitoring/grafana/dashboards/ (the JSON files are checked in).

Edit the panels here and run `python monitoring/grafana/generate_dashboards.py`; a test fails
when the JSON files and this script disagree. Only the standard library is needed.

Every panel and query names the Prometheus datasource by the fixed uid that
provisioning/datasources/prometheus.yml gives it. Queries use Grafana's `$__rate_interval`,
so rates stay correct whatever the scrape interval and zoom level.
"""

from __future__ import annotations

import json
from pathlib import Path

DATASOURCE = {"type": "prometheus", "uid": "prometheus"}
DASHBOARD_DIR = Path(__file__).resolve().parent / "dashboards"
TAG = "llm-platform"
RATE = "$__rate_interval"

# Value mappings shared by the state panels.
UP_DOWN = [{"type": "value", "options": {"0": {"text": "down", "color": "red"},
                                         "1": {"text": "up", "color": "green"}}}]
BREAKER = [{"type": "value", "options": {"0": {"text": "closed", "color": "green"},
                                         "1": {"text": "half-open", "color": "yellow"},
                                         "2": {"text": "open", "color": "red"}}}]
DEGRADED = [{"type": "value", "options": {"0": {"text": "ok", "color": "green"},
                                          "1": {"text": "degraded", "color": "red"}}}]


def q(expr: str, legend: str = "", *, instant: bool = False) -> dict:
    """One Prometheus query of a panel (refIds are assigned by the panel)."""
    return {"expr": expr, "legendFormat": legend, "instant": instant, "range": not instant}


def quantiles(metric: str, by: str = "", selector: str = "",
              levels: tuple[float, ...] = (0.5, 0.95, 0.99)) -> list[dict]:
    """p50/p95/p99 (or other levels) of a histogram, optionally split by labels."""
    group = f"{by}, le" if by else "le"
    legend_prefix = " ".join(f"{{{{{label.strip()}}}}}" for label in by.split(",") if label.strip())
    return [q(f"histogram_quantile({level}, sum by ({group}) "
              f"(rate({metric}_bucket{selector}[{RATE}])))",
              f"{legend_prefix} p{round(level * 100)}".strip())
            for level in levels]


def thresholds(*steps: tuple[float | None, str]) -> dict:
    return {"mode": "absolute",
            "steps": [{"color": color, "value": value} for value, color in steps]}


GREEN = thresholds((None, "green"))


class Board:
    """A dashboard being built: panels flow left to right in a 24-column grid."""

    def __init__(self, uid: str, title: str, description: str) -> None:
        self.uid, self.title, self.description = uid, title, description
        self.panels: list[dict] = []
        self.variables: list[dict] = []
        self._x = self._y = self._row_h = 0

    # -- layout -----------------------------------------------------------------------------
    def _place(self, w: int, h: int) -> dict:
        if self._x + w > 24:
            self._x, self._y, self._row_h = 0, self._y + self._row_h, 0
        pos = {"h": h, "w": w, "x": self._x, "y": self._y}
        self._x += w
        self._row_h = max(self._row_h, h)
        return pos

    def row(self, title: str) -> None:
        if self._x:
            self._x, self._y, self._row_h = 0, self._y + self._row_h, 0
        self.panels.append({"type": "row", "title": title, "collapsed": False,
                            "datasource": DATASOURCE, "panels": [],
                            "gridPos": {"h": 1, "w": 24, "x": 0, "y": self._y}})
        self._y += 1

    def _panel(self, kind: str, title: str, description: str, targets: list[dict],
               w: int, h: int, defaults: dict, options: dict) -> None:
        refs = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
        self.panels.append({
            "type": kind, "title": title, "description": description,
            "datasource": DATASOURCE, "gridPos": self._place(w, h),
            "fieldConfig": {"defaults": defaults, "overrides": []},
            "options": options,
            "targets": [{"refId": refs[i], "datasource": DATASOURCE, **t}
                        for i, t in enumerate(targets)],
        })

    # -- panel kinds ------------------------------------------------------------------------
    def timeseries(self, title: str, description: str, targets: list[dict], *, unit: str = "short",
                   w: int = 12, h: int = 8, stack: bool = False, min_: float | None = 0,
                   max_: float | None = None, steps: dict = GREEN) -> None:
        defaults = {"unit": unit, "min": min_, "max": max_, "thresholds": steps,
                    "color": {"mode": "palette-classic"},
                    "custom": {"drawStyle": "line", "lineWidth": 1, "fillOpacity": 10,
                               "showPoints": "never", "spanNulls": False,
                               "stacking": {"mode": "normal" if stack else "none", "group": "A"}}}
        options = {"legend": {"displayMode": "list", "placement": "bottom", "showLegend": True},
                   "tooltip": {"mode": "multi", "sort": "desc"}}
        self._panel("timeseries", title, description, targets, w, h,
                    {k: v for k, v in defaults.items() if v is not None}, options)

    def stat(self, title: str, description: str, target: dict, *, unit: str = "short",
             w: int = 4, h: int = 4, steps: dict = GREEN, mappings: list | None = None) -> None:
        defaults = {"unit": unit, "thresholds": steps, "color": {"mode": "thresholds"},
                    "mappings": mappings or []}
        options = {"reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
                   "colorMode": "value", "graphMode": "area", "justifyMode": "auto",
                   "orientation": "auto", "textMode": "auto"}
        self._panel("stat", title, description, [target], w, h, defaults, options)

    def bargauge(self, title: str, description: str, target: dict, *, unit: str = "short",
                 w: int = 12, h: int = 8, steps: dict = GREEN, min_: float = 0,
                 max_: float | None = None) -> None:
        defaults = {"unit": unit, "min": min_, "thresholds": steps, "color": {"mode": "thresholds"}}
        if max_ is not None:
            defaults["max"] = max_
        options = {"reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
                   "displayMode": "gradient", "orientation": "horizontal", "showUnfilled": True,
                   "valueMode": "color", "namePlacement": "auto", "sizing": "auto"}
        self._panel("bargauge", title, description, [target], w, h, defaults, options)

    def states(self, title: str, description: str, target: dict, mappings: list, *,
               w: int = 12, h: int = 6) -> None:
        defaults = {"mappings": mappings, "thresholds": GREEN, "color": {"mode": "thresholds"},
                    "custom": {"fillOpacity": 80, "lineWidth": 0}}
        options = {"mergeValues": True, "showValue": "auto", "rowHeight": 0.9,
                   "alignValue": "left",
                   "legend": {"displayMode": "list", "placement": "bottom", "showLegend": False},
                   "tooltip": {"mode": "single", "sort": "none"}}
        self._panel("state-timeline", title, description, [target], w, h, defaults, options)

    # -- variables --------------------------------------------------------------------------
    def variable(self, name: str, label: str, metric: str, label_name: str) -> None:
        """A multi-value filter over a label's values, "All" by default (matches absent labels too)."""
        query = f"label_values({metric}, {label_name})"
        self.variables.append({
            "name": name, "label": label, "type": "query", "datasource": DATASOURCE,
            "query": {"query": query, "refId": f"{name}-values"}, "definition": query,
            "refresh": 2, "sort": 1, "regex": "", "hide": 0, "multi": True,
            "includeAll": True, "allValue": ".*", "options": [],
            "current": {"selected": True, "text": ["All"], "value": ["$__all"]},
        })

    def to_json(self) -> dict:
        panels = []
        for panel_id, panel in enumerate(self.panels, start=1):
            panels.append({"id": panel_id, **panel})
        return {
            "uid": self.uid, "title": self.title, "description": self.description,
            "tags": [TAG], "timezone": "browser", "editable": True, "graphTooltip": 1,
            "schemaVersion": 39, "version": 1, "refresh": "30s",
            "time": {"from": "now-1h", "to": "now"}, "timepicker": {},
            "fiscalYearStartMonth": 0, "liveNow": False, "weekStart": "",
            "annotations": {"list": [{
                "builtIn": 1, "datasource": {"type": "grafana", "uid": "-- Grafana --"},
                "enable": True, "hide": True, "iconColor": "rgba(0, 211, 255, 1)",
                "name": "Annotations & Alerts", "type": "dashboard"}]},
            "links": [{"type": "dashboards", "tags": [TAG], "asDropdown": False,
                       "includeVars": False, "keepTime": True, "targetBlank": False,
                       "title": "LLM platform", "icon": "external link", "tooltip": "", "url": ""}],
            "templating": {"list": self.variables},
            "panels": panels,
        }


# ------------------------------------------------------------------------------------------
def platform_overview() -> Board:
    b = Board("llm-platform-overview", "LLM platform: overview",
              "Is the platform healthy? Traffic, errors, latency, capacity, backends, cache, "
              "Redis and the nginx edge, as the gateway and its neighbours see them.")
    b.variable("route", "Route", "inference_requests_total", "route")
    sel = '{route=~"$route"}'

    b.row("Now")
    b.stat("Requests/s", "Requests answered per second, every status.",
           q(f"sum(rate(inference_requests_total{sel}[{RATE}]))"), unit="reqps")
    b.stat("5xx ratio", "Share of requests answered 5xx (the platform's failures; 4xx are the clients').",
           q(f'sum(rate(inference_requests_total{{route=~"$route", status=~"5.."}}[{RATE}])) '
             f"/ sum(rate(inference_requests_total{sel}[{RATE}]))"),
           unit="percentunit", steps=thresholds((None, "green"), (0.01, "yellow"), (0.05, "red")))
    b.stat("In flight", "Requests being served right now, all gateway workers and replicas.",
           q(f"sum(llmgw_requests_in_flight{sel})"))
    b.stat("Queued", "Requests waiting for a free backend slot, every pool.",
           q("sum(llmgw_queue_depth)"), steps=thresholds((None, "green"), (1, "yellow"), (50, "red")))
    b.stat("Backends up", "vLLM backends that at least one gateway considers healthy (of 5).",
           q("sum(max by (backend) (llmgw_backend_up))"),
           steps=thresholds((None, "red"), (4, "yellow"), (5, "green")))
    b.stat("Open breakers", "Circuit breakers open right now.",
           q("count(max by (backend) (llmgw_circuit_breaker_state) == 2) or vector(0)"),
           steps=thresholds((None, "green"), (1, "red")))

    b.row("Traffic and errors")
    b.timeseries("Requests/s by route", "Every answered request, by endpoint.",
                 [q(f"sum by (route) (rate(inference_requests_total{sel}[{RATE}]))", "{{route}}")],
                 unit="reqps", stack=True)
    b.timeseries("Responses/s by status", "HTTP status codes the gateway answered.",
                 [q(f"sum by (status) (rate(inference_requests_total{sel}[{RATE}]))", "{{status}}")],
                 unit="reqps", stack=True)
    b.timeseries("5xx ratio by route", "Share of each route's requests answered 5xx. "
                 "Alert Gateway5xxRatioHigh fires above 5% for 5 minutes.",
                 [q(f'sum by (route) (rate(inference_requests_total{{route=~"$route", status=~"5.."}}[{RATE}])) '
                    f"/ sum by (route) (rate(inference_requests_total{sel}[{RATE}]))", "{{route}}")],
                 unit="percentunit", steps=thresholds((None, "green"), (0.05, "red")))
    b.timeseries("Refusals/s by reason", "Requests refused before reaching a backend: limits, "
                 "quotas, bad keys, missing scope, no capacity.",
                 [q(f"sum by (reason) (rate(llmgw_rejections_total[{RATE}]))", "{{reason}}")],
                 unit="reqps", stack=True)

    b.row("Latency")
    b.timeseries("End-to-end latency", "From request received to last byte sent, all routes "
                 "selected (streams included, so long generations weigh in).",
                 quantiles("inference_latency_seconds", selector=sel), unit="s")
    b.timeseries("p99 latency by route", "Alerts: GenerationLatencyP99High (> 2 min), "
                 "EmbedRerankLatencyP99High (> 5 s).",
                 quantiles("inference_latency_seconds", "route", sel, levels=(0.99,)), unit="s")
    b.timeseries("Time to first token", "Streaming requests: time until the first token reached "
                 "the client.",
                 quantiles("llmgw_time_to_first_token_seconds", selector=sel), unit="s")
    b.timeseries("Gateway overhead", "Time spent in the gateway itself (auth, limits, routing, "
                 "relaying), excluding the backend.",
                 quantiles("llmgw_gateway_overhead_seconds", selector=sel), unit="s")
    b.timeseries("Upstream latency p95 by backend", "Time the backend took, as the gateway "
                 "measured it.",
                 quantiles("llmgw_upstream_latency_seconds", "backend", levels=(0.95,)), unit="s",
                 w=24)

    b.row("Capacity")
    b.timeseries("In flight by route", "Requests being served, by route.",
                 [q(f"sum by (route) (llmgw_requests_in_flight{sel})", "{{route}}")],
                 stack=True, w=8)
    b.timeseries("Queue depth by pool", "Requests waiting for a backend slot.",
                 [q("sum by (pool) (llmgw_queue_depth)", "{{pool}}")], stack=True, w=8)
    b.timeseries("Queue wait p95 by pool", "How long queued requests waited. Alert QueueWaitHigh "
                 "fires above 1 s for 5 minutes.",
                 quantiles("llmgw_queue_wait_seconds", "pool", levels=(0.95,)), unit="s", w=8)
    b.timeseries("Retries/s by pool and reason", "Requests the gateway retried on another backend.",
                 [q(f"sum by (pool, reason) (rate(llmgw_retries_total[{RATE}]))",
                    "{{pool}} {{reason}}")], unit="reqps", w=24)

    b.row("Backends")
    b.states("Backend health", "The gateway's health checks (any replica seeing it up counts).",
             q("max by (backend) (llmgw_backend_up)", "{{backend}}"), UP_DOWN)
    b.states("Circuit breakers", "closed: normal; open: requests are not sent; half-open: probing.",
             q("max by (backend) (llmgw_circuit_breaker_state)", "{{backend}}"), BREAKER)

    b.row("Cache, Redis and edge")
    b.timeseries("Cache hit ratio by route", "Share of cacheable requests answered from the "
                 "response cache.",
                 [q(f'sum by (route) (rate(llmgw_cache_requests_total{{route=~"$route", result="hit"}}[{RATE}])) '
                    f"/ sum by (route) (rate(llmgw_cache_requests_total{sel}[{RATE}]))", "{{route}}")],
                 unit="percentunit", max_=1, w=8)
    b.timeseries("Gateway Redis errors/s", "Failed Redis calls from the gateway, by operation.",
                 [q(f"sum by (op) (rate(llmgw_redis_errors_total[{RATE}]))", "{{op}}")], w=8)
    b.states("Limiter", "degraded: a gateway cannot reach Redis and applies its fail-open or "
             "fail-closed policy.",
             q("max by (instance) (llmgw_limiter_degraded)", "{{instance}}"), DEGRADED, w=8, h=8)
    b.stat("Redis", "Redis as its exporter sees it.", q("min(redis_up)"), mappings=UP_DOWN,
           steps=thresholds((None, "red"), (1, "green")))
    b.stat("Redis memory", "Memory Redis uses (keys, counters, audit stream).",
           q("sum(redis_memory_used_bytes)"), unit="bytes")
    b.stat("Redis clients", "Open client connections (gateway workers and replicas).",
           q("sum(redis_connected_clients)"))
    b.stat("nginx", "nginx as its exporter sees it.", q("min(nginx_up)"), mappings=UP_DOWN,
           steps=thresholds((None, "red"), (1, "green")))
    b.timeseries("nginx requests/s", "Every request nginx handled, including redirects and "
                 "refusals at the edge.",
                 [q(f"sum(rate(nginx_http_requests_total[{RATE}]))", "requests")],
                 unit="reqps", w=8, h=4)
    b.timeseries("nginx connections", "Client connections at the edge.",
                 [q("sum(nginx_connections_active)", "active"),
                  q("sum(nginx_connections_waiting)", "idle keep-alive")], w=24)
    return b


def tenants() -> Board:
    b = Board("llm-tenants", "LLM platform: tenants, usage and quotas",
              "Who uses the platform and how much: requests, tokens, refusals and quota use per "
              "organisation. Organisation labels are absent when METRICS_TENANT_LABELS=off.")
    b.variable("org", "Organisation", "inference_requests_total", "org")
    org = '{org=~"$org"}'

    b.row("Quotas")
    b.bargauge("Quota used (now)", "Share of each quota used in its current period. Alert "
               "QuotaNearExhaustion fires above 90%; at 100% requests are refused with 429.",
               q(f"max by (org, quota) (llmgw_quota_usage_ratio{org})", "{{org}} {{quota}}",
                 instant=True),
               unit="percentunit", max_=1,
               steps=thresholds((None, "green"), (0.75, "yellow"), (0.9, "red")))
    b.timeseries("Quota used over time", "The same ratios over time: a steep slope means the "
                 "quota runs out before the period ends.",
                 [q(f"max by (org, quota) (llmgw_quota_usage_ratio{org})", "{{org}} {{quota}}")],
                 unit="percentunit", max_=1)

    b.row("Requests")
    b.timeseries("Requests/s by organisation", "Every answered request.",
                 [q(f"sum by (org) (rate(inference_requests_total{org}[{RATE}]))", "{{org}}")],
                 unit="reqps", stack=True)
    b.timeseries("Requests/s by organisation and status", "Status codes per organisation "
                 "(429: a limit or quota; 401/403: keys and scopes).",
                 [q(f"sum by (org, status) (rate(inference_requests_total{org}[{RATE}]))",
                    "{{org}} {{status}}")], unit="reqps")
    b.timeseries("Refusals/s by reason", "Requests refused before reaching a backend.",
                 [q(f"sum by (reason) (rate(llmgw_rejections_total{org}[{RATE}]))", "{{reason}}")],
                 unit="reqps", stack=True)
    b.timeseries("Refusals/s by organisation and reason", "Which organisation hits which limit.",
                 [q(f"sum by (org, reason) (rate(llmgw_rejections_total{org}[{RATE}]))",
                    "{{org}} {{reason}}")], unit="reqps")

    b.row("Tokens")
    b.timeseries("Input tokens/s by organisation", "Prompt tokens sent to the models.",
                 [q(f'sum by (org) (rate(tokens_processed_total{{org=~"$org", type="input"}}[{RATE}]))',
                    "{{org}}")], stack=True)
    b.timeseries("Output tokens/s by organisation", "Tokens the models generated.",
                 [q(f'sum by (org) (rate(tokens_processed_total{{org=~"$org", type="output"}}[{RATE}]))',
                    "{{org}}")], stack=True)
    b.timeseries("Tokens/s by model", "Input and output tokens per public model.",
                 [q(f"sum by (model, type) (rate(tokens_processed_total{org}[{RATE}]))",
                    "{{model}} {{type}}")])
    b.bargauge("Top 10 organisations by tokens (time range)", "Input plus output tokens over "
               "the dashboard's time range.",
               q(f"topk(10, sum by (org) (increase(tokens_processed_total{org}[$__range])))",
                 "{{org}}", instant=True))
    return b


def backends_gpus() -> Board:
    b = Board("llm-backends-gpus", "LLM platform: backends and GPUs",
              "Inside the engines and the GPUs: vLLM's own metrics per backend and NVIDIA DCGM's "
              "per GPU (GPU 0 chat0, 1 chat1, 2 text2sql, 3 embed and rerank).")
    b.variable("backend", "Backend", "vllm:num_requests_running", "backend")
    b.variable("gpu", "GPU", "DCGM_FI_DEV_GPU_UTIL", "gpu")
    be = '{backend=~"$backend"}'
    gpu = '{gpu=~"$gpu"}'

    b.row("vLLM engines")
    b.timeseries("Running requests", "Sequences the engine is generating for right now.",
                 [q(f"sum by (backend) (vllm:num_requests_running{be})", "{{backend}}")], w=8)
    b.timeseries("Waiting requests", "Requests queued inside the engine (no free slot or KV "
                 "cache).",
                 [q(f"sum by (backend) (vllm:num_requests_waiting{be})", "{{backend}}")], w=8)
    b.timeseries("KV cache usage", "Share of the KV cache in use; near 100% the engine "
                 "preempts and queues.",
                 [q(f"max by (backend) (vllm:kv_cache_usage_perc{be})", "{{backend}}")],
                 unit="percentunit", max_=1, w=8,
                 steps=thresholds((None, "green"), (0.9, "red")))
    b.timeseries("Time to first token p95", "Measured inside the engine (prefill and queueing).",
                 quantiles("vllm:time_to_first_token_seconds", "backend", be, levels=(0.95,)),
                 unit="s", w=8)
    b.timeseries("End-to-end request latency p95", "Measured inside the engine.",
                 quantiles("vllm:e2e_request_latency_seconds", "backend", be, levels=(0.95,)),
                 unit="s", w=8)
    b.timeseries("Queue time p95", "Time requests waited inside the engine before running.",
                 quantiles("vllm:request_queue_time_seconds", "backend", be, levels=(0.95,)),
                 unit="s", w=8)
    b.timeseries("Generation tokens/s", "Output tokens generated.",
                 [q(f"sum by (backend) (rate(vllm:generation_tokens_total{be}[{RATE}]))",
                    "{{backend}}")], w=8)
    b.timeseries("Prompt tokens/s", "Prompt tokens processed (prefill).",
                 [q(f"sum by (backend) (rate(vllm:prompt_tokens_total{be}[{RATE}]))",
                    "{{backend}}")], w=8)
    b.timeseries("Inter-token latency p95", "Time between two tokens of a stream.",
                 quantiles("vllm:inter_token_latency_seconds", "backend", be, levels=(0.95,)),
                 unit="s", w=8)
    b.timeseries("Finished requests/s by reason", "stop, length, abort (client went away), "
                 "error.",
                 [q(f"sum by (backend, finished_reason) (rate(vllm:request_success_total{be}[{RATE}]))",
                    "{{backend}} {{finished_reason}}")], unit="reqps", w=8)
    b.timeseries("Preemptions/s", "Sequences evicted for lack of KV cache (they restart later).",
                 [q(f"sum by (backend) (rate(vllm:num_preemptions_total{be}[{RATE}]))",
                    "{{backend}}")], w=8)
    b.timeseries("Prefix cache hit ratio", "Share of prompt tokens found in the prefix cache.",
                 [q(f"sum by (backend) (rate(vllm:prefix_cache_hits_total{be}[{RATE}])) "
                    f"/ sum by (backend) (rate(vllm:prefix_cache_queries_total{be}[{RATE}]))",
                    "{{backend}}")], unit="percentunit", max_=1, w=8)
    b.states("Health (gateway's view)", "The gateway's active health checks.",
             q(f"max by (backend) (llmgw_backend_up{be})", "{{backend}}"), UP_DOWN)
    b.timeseries("Upstream latency p95 (gateway's view)", "Backend time measured by the gateway, "
                 "network included.",
                 quantiles("llmgw_upstream_latency_seconds", "backend", be, levels=(0.95,)),
                 unit="s", h=6)

    b.row("GPUs (DCGM)")
    legend = "GPU {{gpu}} {{workload}}"
    b.timeseries("GPU utilisation", "Share of time the GPU was busy.",
                 [q(f"avg by (gpu, workload) (DCGM_FI_DEV_GPU_UTIL{gpu})", legend)],
                 unit="percent", max_=100, w=8)
    b.timeseries("GPU memory used", "Framebuffer memory in use (vLLM reserves its share at start).",
                 [q(f"avg by (gpu, workload) (DCGM_FI_DEV_FB_USED{gpu})", legend)],
                 unit="mbytes", w=8)
    b.timeseries("GPU memory free", "Framebuffer memory free.",
                 [q(f"avg by (gpu, workload) (DCGM_FI_DEV_FB_FREE{gpu})", legend)],
                 unit="mbytes", w=8)
    b.timeseries("GPU memory used %", "Alert GPUMemoryNearFull fires above 97% for 10 minutes.",
                 [q(f"avg by (gpu, workload) (DCGM_FI_DEV_FB_USED{gpu} "
                    f"/ (DCGM_FI_DEV_FB_USED{gpu} + DCGM_FI_DEV_FB_FREE{gpu}))", legend)],
                 unit="percentunit", max_=1, w=8,
                 steps=thresholds((None, "green"), (0.97, "red")))
    b.timeseries("GPU temperature", "Alerts at 83 °C (warning) and 88 °C (critical).",
                 [q(f"avg by (gpu, workload) (DCGM_FI_DEV_GPU_TEMP{gpu})", legend)],
                 unit="celsius", min_=None, w=8,
                 steps=thresholds((None, "green"), (83, "yellow"), (88, "red")))
    b.timeseries("GPU power", "Power draw (an L4 is rated 72 W).",
                 [q(f"avg by (gpu, workload) (DCGM_FI_DEV_POWER_USAGE{gpu})", legend)],
                 unit="watt", w=8)
    b.timeseries("SM clock", "A clock falling under load means thermal or power throttling.",
                 [q(f"avg by (gpu, workload) (DCGM_FI_DEV_SM_CLOCK{gpu}) * 1000000", legend)],
                 unit="hertz", w=12)
    b.stat("Last XID error", "The last XID error code a GPU reported (0: none). Any other value "
           "needs a look at the host's kernel log.",
           q(f"max(DCGM_FI_DEV_XID_ERRORS{gpu})"), w=12, h=8,
           steps=thresholds((None, "green"), (1, "red")))
    return b


BOARDS = {"platform-overview.json": platform_overview,
          "tenants-usage-quotas.json": tenants,
          "backends-gpus.json": backends_gpus}


def render() -> dict[str, str]:
    """File name -> JSON text, exactly as checked in."""
    return {name: json.dumps(build().to_json(), indent=2, ensure_ascii=False) + "\n"
            for name, build in BOARDS.items()}


def main() -> None:
    DASHBOARD_DIR.mkdir(exist_ok=True)
    for name, text in render().items():
        (DASHBOARD_DIR / name).write_text(text, encoding="utf-8")
        print(f"wrote {DASHBOARD_DIR.name}/{name}")


if __name__ == "__main__":
    main()
