"""Circuit breakers per backend, driven by an injected clock: consecutive failures open one,
one trial goes through once it recovers, and stragglers neither extend nor close it."""

from llmgw.observability.metrics import Metrics
from llmgw.resilience.breakers import Breakers


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_breaker_opens_after_threshold_and_lets_one_trial_through_after_recovery():
    clock = Clock()
    b = Breakers(["a"], failure_threshold=5, recovery_secs=30, clock=clock)
    for _ in range(4):
        b.failure("a")
    assert b.allows("a")
    b.success("a")  # consecutive failures only
    for _ in range(5):
        b.failure("a")
    assert b.state("a") == "open" and not b.allows("a")
    clock.now += 29.9
    assert not b.allows("a")
    clock.now += 0.2
    assert b.allows("a") and b.state("a") == "half-open"
    b.taken("a")
    assert not b.allows("a")  # one trial only
    b.failure("a")
    assert b.state("a") == "open"
    clock.now += 30
    assert b.allows("a")
    b.taken("a")
    b.success("a")
    assert b.state("a") == "closed" and b.allows("a")


def test_abandoned_trial_frees_the_half_open_slot():
    clock = Clock()
    b = Breakers(["a"], failure_threshold=1, recovery_secs=1, clock=clock)
    b.failure("a")
    clock.now += 1
    assert b.allows("a")
    b.taken("a")
    b.abandon("a")
    assert b.allows("a")


def test_a_straggling_failure_does_not_extend_the_recovery_time():
    clock = Clock()
    b = Breakers(["a"], failure_threshold=1, recovery_secs=10, clock=clock)
    b.failure("a")
    clock.now += 9
    b.failure("a")  # a request sent before it opened, failing late
    clock.now += 1
    assert b.state("a") == "half-open"


def test_a_straggling_success_does_not_close_an_open_breaker():
    clock = Clock()
    b = Breakers(["a"], failure_threshold=1, recovery_secs=10, clock=clock)
    b.failure("a")
    b.success("a")
    assert b.state("a") == "open" and not b.allows("a")


def test_breakers_are_per_backend():
    b = Breakers(["a", "b"], failure_threshold=1, recovery_secs=10, clock=Clock())
    b.failure("a")
    assert b.snapshot() == {"a": "open", "b": "closed"}
    assert b.allows("b") and not b.allows("a")


def test_a_passing_health_check_half_opens_at_once_and_closing_is_announced():
    clock, closed = Clock(), []
    b = Breakers(["a"], failure_threshold=1, recovery_secs=300, clock=clock,
                 on_closed=closed.append)
    b.ready("a")  # closed: nothing to cut short
    assert b.state("a") == "closed" and closed == []
    b.failure("a")
    b.ready("a")
    assert b.state("a") == "half-open" and b.allows("a")
    b.taken("a")
    b.success("a")
    assert b.state("a") == "closed" and closed == ["a"]


def test_refused_is_handed_to_the_health_monitor_and_counts_nothing_itself():
    refused = []
    b = Breakers(["a"], failure_threshold=1, recovery_secs=10, clock=Clock(),
                 on_refused=refused.append)
    b.refused("a")
    assert refused == ["a"] and b.state("a") == "closed"


def test_the_state_gauge_follows_every_transition():
    clock, metrics = Clock(), Metrics(tenant_labels=False)
    b = Breakers(["a"], failure_threshold=1, recovery_secs=5, clock=clock, metrics=metrics)

    def gauge():
        return metrics.registry.get_sample_value("llmgw_circuit_breaker_state", {"backend": "a"})
    b.failure("a")
    assert gauge() == 2
    clock.now += 5
    assert b.state("a") == "half-open" and gauge() == 1
    b.taken("a")
    b.success("a")
    assert gauge() == 0
