"""build_selector: the balancer, breakers, health checks, suspects and queue wired into one
selector, with the settings' thresholds, and events flowing between them."""

import asyncio

import pytest

from llmgw.backend_http import ConnectError
from llmgw.backend_state import Figures, StateView
from llmgw.errors import BackendUnavailable
from llmgw.health import HealthMonitor
from llmgw.observability.metrics import Metrics
from llmgw.resilience.wiring import build_selector
from llmgw.routing import Backend, Model, Pool, RoutingTable
from llmgw.settings import Settings


class Probes:
    """A stand-in backend client: /health answers 200 while the backend is `up`."""

    def __init__(self) -> None:
        self.up = {"b0": True, "b1": True}

    async def request(self, origin, method, path, headers, body, *, read_timeout):
        if not self.up[origin.host]:
            raise ConnectError("refused")
        return Answer()


class Answer:
    status = 200

    async def read(self) -> bytes:
        return b""

    def close(self) -> None:
        return None


def _wired(seqs=1, state=None, **settings):
    pool = Pool("p", (Backend("b0", "http://b0", seqs), Backend("b1", "http://b1", seqs)))
    model = Model("m", "m", (), pool, frozenset(), "o")
    routing = RoutingTable([model], {"p": pool})
    probes, metrics = Probes(), Metrics(tenant_labels=False)
    health = HealthMonitor(probes, routing, interval=10, timeout=1, metrics=metrics)
    selector = build_selector(Settings(**{"queue_timeout_secs": 5, **settings}), routing, health,
                              metrics, state)
    return selector, health, probes, model


def test_an_unhealthy_backend_is_not_chosen_and_a_refusal_marks_it_down():
    async def scenario():
        sel, health, _probes, model = _wired(seqs=4)
        sel.breakers.refused("b0")  # the breakers tell the health monitor
        assert not health.healthy["b0"]
        assert {(await sel.acquire(model, "o"))[0].name for _ in range(3)} == {"b1"}
        health.mark_down("b1")
        with pytest.raises(BackendUnavailable):
            await sel.acquire(model, "o")

    asyncio.run(scenario())


def test_the_breakers_use_the_settings_threshold():
    async def scenario():
        sel, _health, _probes, model = _wired(seqs=4, circuit_failure_threshold=2)
        sel.breakers.failure("b0")
        assert sel.breakers.allows("b0")
        sel.breakers.failure("b0")
        assert not sel.breakers.allows("b0")
        assert {(await sel.acquire(model, "o"))[0].name for _ in range(3)} == {"b1"}

    asyncio.run(scenario())


def test_each_worker_is_bounded_by_max_num_seqs_and_a_release_wakes_the_queue():
    async def scenario():
        sel, _health, _probes, model = _wired(seqs=1)
        held = [(await sel.acquire(model, "o"))[0] for _ in range(2)]
        waiter = asyncio.create_task(sel.acquire(model, "x"))
        await asyncio.sleep(0.01)
        assert sel.queue.depth("p") == 1 and not waiter.done()
        sel.release(held[0])
        assert (await asyncio.wait_for(waiter, 1))[0] is held[0]

    asyncio.run(scenario())


def test_a_passing_probe_brings_a_backend_back_and_half_opens_its_breaker():
    async def scenario():
        sel, health, probes, model = _wired(seqs=4, circuit_recovery_timeout=3600)
        for _ in range(5):
            sel.breakers.failure("b0")
        probes.up["b0"] = False
        await health.probe_all()
        assert not health.healthy["b0"] and sel.breakers.state("b0") == "open"
        probes.up["b0"] = True
        await health.probe_all()
        assert health.healthy["b0"] and sel.breakers.state("b0") == "half-open"

    asyncio.run(scenario())


def test_suspects_are_held_for_the_settings_failover_hold():
    sel, *_ = _wired(failover_hold_secs=60)
    sel.suspects.failed("b0")
    assert sel.suspects.suspect("b0")
    sel, *_ = _wired(failover_hold_secs=0)
    sel.suspects.failed("b0")
    assert not sel.suspects.suspect("b0")


def test_a_tie_goes_to_the_backend_reporting_less_load():
    async def scenario():
        state = StateView(["b0", "b1"], stale_after=60)
        state.record("b0", Figures(running=9, waiting=3, kv_usage=None, prefix_hits=None,
                                   prefix_queries=None))
        state.record("b1", Figures(running=1, waiting=0, kv_usage=None, prefix_hits=None,
                                   prefix_queries=None))
        sel, _health, _probes, model = _wired(seqs=4, state=state)
        for _ in range(5):
            backend = (await sel.acquire(model, "o"))[0]
            assert backend.name == "b1"
            sel.release(backend)

    asyncio.run(scenario())
