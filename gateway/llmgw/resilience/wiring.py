"""How the balancer, breakers, health checks and admission queue are wired into one selector."""

from __future__ import annotations

from ..backend_state import StateView
from ..balancer import LeastInFlightBalancer
from ..health import HealthMonitor
from ..observability.decision_counts import DecisionCounts
from ..observability.metrics import Metrics
from ..routing import Backend, RoutingTable
from ..settings import Settings
from .breakers import Breakers
from .queue import FairQueue
from .selector import BackendSelector
from .suspects import Suspects


def build_selector(settings: Settings, routing: RoutingTable, health: HealthMonitor,
                   metrics: Metrics, state: StateView | None = None) -> BackendSelector:
    """A backend is eligible while healthy and its breaker lets requests through; it has
    capacity while below its max_num_seqs; it is preferred while not suspect (no recent
    failure). Ties in requests in flight go to the backend reporting the least load in the
    state view, while its figures are fresh.

    Events flow one way: a refused connection marks the backend down (health); a passing
    health check half-opens its breaker and wakes the queue; a freed slot or a breaker closing
    again wakes the queue too.
    """
    pool_of = {b.name: pool for pool in routing.pools.values() for b in pool.backends}

    def capacity_back(name: str) -> None:
        selector.wake(pool_of[name])  # bound below, before any request or probe can call this

    decisions = DecisionCounts(metrics.routing_decisions)
    health.after_round(decisions.flush)
    breakers = Breakers(list(pool_of), failure_threshold=settings.circuit_failure_threshold,
                        recovery_secs=settings.circuit_recovery_timeout, metrics=metrics,
                        on_refused=health.mark_down, on_closed=capacity_back)
    balancer = LeastInFlightBalancer(
        eligible=lambda b: health.is_healthy(b) and breakers.allows(b.name),
        # Each worker enforces the whole max_num_seqs: splitting it by workers refuses work
        # whenever the kernel spreads connections unevenly; vLLM's own queue absorbs overlap.
        bounded=True,
        on_release=lambda b: capacity_back(b.name),
        reported=state.reported_load if state is not None else None,
        on_decision=decisions.note)
    selector = BackendSelector(balancer, breakers, FairQueue(metrics=metrics),
                               queue_timeout=settings.queue_timeout_secs,
                               suspects=Suspects(settings.failover_hold_secs), metrics=metrics)

    def ready(backend: Backend) -> None:
        selector.recovered(backend, pool_of[backend.name])

    health.when_ready(ready)
    return selector
