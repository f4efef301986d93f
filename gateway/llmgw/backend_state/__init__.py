"""The backend state view: each worker's picture of every backend, from its own counts and the
backend's /metrics.

Parts: `parse` reads vLLM's figures out of a /metrics body, `view` keeps them per backend with
their age, `scraper` fetches them on an interval (BACKEND_METRICS_INTERVAL_SECS, with jitter),
in the lifespan, never on the request path.

The API, for the balancer and the routing policies built on it (`services.state`, a StateView):

- `view.fresh(name) -> BackendState | None`: the backend's latest figures if they are recent
  enough to act on (younger than STALE_INTERVALS intervals), else None. A BackendState has
  `running`, `waiting` (requests, summed over the server's engines), `kv_usage` (0..1),
  `prefix_hits` / `prefix_queries` (cumulative counters, prompt tokens), `prefix_hit_ratio`
  (hits / queries between the two latest scrapes that saw queries), `scraped_at`, `error`
  (the latest scrape's failure, None after a good one) and `failures` (in a row).
- `view.reported_load(name) -> float | None`: running + waiting when fresh, else None.
- `view.load(backend) -> float`: the best estimate of the requests on a backend: the
  reported load when fresh (it counts every worker's and replica's), never less than this
  worker's own `backend.in_flight`; the worker's own count alone otherwise.
- `view.state(name)` (stale or not), `view.age(name)` (seconds since the latest good scrape),
  `view.snapshot(name)` (a dict, as /health/detailed shows it), `view.enabled`.

A backend whose /metrics fails, hangs, answers garbage or too much only ages its figures; once
stale, everything that reads the view falls back to the worker's own counts, as before it
existed. The figures are per worker (each scrapes on its own), up to an interval old.
"""

from .parse import Figures, NotVLLMMetrics, parse
from .scraper import MetricsScraper
from .view import STALE_INTERVALS, BackendState, StateView

__all__ = ["Figures", "NotVLLMMetrics", "parse", "MetricsScraper", "STALE_INTERVALS",
           "BackendState", "StateView"]
