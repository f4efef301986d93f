"""Recovery: a refused connection takes a backend out, a passing probe brings it back (breaker
trial, queue woken), and a draining worker's answers say Connection: close."""

import asyncio
from types import SimpleNamespace

from llmgw.backend_http import ConnectError, ConnectionDropped, ReadTimeout
from llmgw.drain import CloseWhenDraining
from llmgw.health import HealthMonitor
from llmgw.observability.metrics import Metrics
from llmgw.resilience.breakers import Breakers
from llmgw.resilience.wiring import build_selector
from llmgw.routing import Backend, Model, Pool, RoutingTable
from llmgw.settings import Settings


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Probes:
    """A stand-in backend client: /health answers from `up`; `gate` holds a probe mid-flight."""

    def __init__(self) -> None:
        self.up = {"http://b0": True, "http://b1": True}
        self.slow = {"http://b0": False, "http://b1": False}
        self.gate: asyncio.Event | None = None
        self.dropped = {"http://b0": 0, "http://b1": 0}  # kept-alive connections closed under us

    async def request(self, origin, method, path, headers, body, *, read_timeout):
        assert (method, path) == (b"GET", b"/health")
        base = "http://" + origin.host
        if self.gate is not None:
            await self.gate.wait()
        if self.dropped[base]:
            self.dropped[base] -= 1
            raise ConnectionDropped("the backend closed the connection")
        if self.slow[base]:
            raise ReadTimeout("no answer in time")
        if not self.up[base]:
            raise ConnectError("refused")
        return Answer()


class Answer:
    status = 200

    async def read(self) -> bytes:
        return b""

    def close(self) -> None:
        return None


def _stack(seqs=1, recovery=30.0):
    pool = Pool("p", (Backend("b0", "http://b0", seqs), Backend("b1", "http://b1", seqs)))
    model = Model("m", "m", (), pool, frozenset(), "o")
    routing = RoutingTable([model], {"p": pool})
    probes, metrics = Probes(), Metrics(tenant_labels=False)
    health = HealthMonitor(probes, routing, interval=10, timeout=1, metrics=metrics)
    settings = Settings(queue_timeout_secs=5, circuit_recovery_timeout=recovery)
    return build_selector(settings, routing, health, metrics), health, probes, model


def test_a_probe_on_a_connection_the_backend_had_just_closed_is_tried_once_more():
    """The keep-alive race (the backend closes an idle connection as the probe is sent) is no
    verdict on the backend: both backends dropping at once took a whole pool out for a probe
    interval, and requests got 503 'no backend available'."""
    async def scenario():
        _, health, probes, _ = _stack()
        probes.dropped = {"http://b0": 1, "http://b1": 1}
        await health.probe_all()
        assert health.healthy == {"b0": True, "b1": True}
        probes.dropped = {"http://b0": 2, "http://b1": 0}  # dropped twice: something is wrong
        await health.probe_all()
        assert health.healthy == {"b0": False, "b1": True}

    asyncio.run(scenario())


def test_a_refused_connection_takes_the_backend_out_until_a_probe_passes():
    async def scenario():
        sel, health, probes, model = _stack(seqs=4)
        sel.breakers.refused("b0")
        assert not health.healthy["b0"]
        for _ in range(3):
            assert (await sel.acquire(model, "o"))[0].name == "b1"
        await health.probe_all()
        assert health.healthy["b0"]

    asyncio.run(scenario())


def test_a_probe_that_started_before_the_refusal_does_not_undo_it():
    async def scenario():
        _sel, health, probes, _model = _stack()
        probes.gate = asyncio.Event()
        probing = asyncio.create_task(health.probe_all())
        await asyncio.sleep(0.01)  # both probes are waiting for their answers
        health.mark_down("b0")  # the probe's 200 was from before the kill
        probes.gate.set()
        await probing
        assert not health.healthy["b0"] and health.healthy["b1"]
        await health.probe_all()
        assert health.healthy["b0"]

    asyncio.run(scenario())


def test_one_slow_probe_is_no_verdict_two_in_a_row_are():
    async def scenario():
        _sel, health, probes, _model = _stack()
        probes.slow["http://b0"] = True
        await health.probe_all()  # e.g. a worker booting during a reload, the host busy
        assert health.healthy["b0"]
        await health.probe_all()
        assert not health.healthy["b0"]
        probes.slow["http://b0"] = False
        await health.probe_all()
        assert health.healthy["b0"]
        probes.up["http://b1"] = False
        await health.probe_all()  # a refusal is a verdict at once
        assert not health.healthy["b1"]

    asyncio.run(scenario())


def test_a_passing_probe_half_opens_the_breaker_without_waiting_its_recovery_time():
    async def scenario():
        sel, health, probes, model = _stack(recovery=3600)
        for _ in range(5):
            sel.breakers.failure("b0")
        probes.up["http://b0"] = False
        await health.probe_all()
        assert sel.breakers.state("b0") == "open"
        probes.up["http://b0"] = True
        await health.probe_all()
        assert sel.breakers.state("b0") == "half-open" and sel.breakers.allows("b0")

    asyncio.run(scenario())


def test_queued_requests_get_a_recovered_backend_at_once_not_at_their_timeout():
    async def scenario():
        sel, health, probes, model = _stack(seqs=2)
        probes.up["http://b0"] = False
        await health.probe_all()
        held = [(await sel.acquire(model, "o"))[0] for _ in range(2)]  # b1 full
        waiters = [asyncio.create_task(sel.acquire(model, org)) for org in ("x", "y")]
        await asyncio.sleep(0.01)
        assert sel.queue.depth("p") == 2
        probes.up["http://b0"] = True
        await health.probe_all()  # b0 ready again, with 2 free slots
        got = await asyncio.wait_for(asyncio.gather(*waiters), 1.0)  # queue timeout is 5 s
        assert [b.name for b, _ in got] == ["b0", "b0"] and [b.name for b in held] == ["b1", "b1"]

    asyncio.run(scenario())


def test_a_breaker_closing_again_wakes_the_queue():
    closed = []
    clock = Clock()
    b = Breakers(["a"], failure_threshold=1, recovery_secs=1, clock=clock, on_closed=closed.append)
    b.success("a")
    assert closed == []  # closed all along: nothing came back
    b.failure("a")
    clock.now += 1
    assert b.allows("a")
    b.taken("a")
    b.success("a")
    assert closed == ["a"]


def _answer(draining: bool, headers):
    async def app(scope, receive, send):
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": b"ok"})

    services = SimpleNamespace(draining=draining)
    scope = {"type": "http", "app": SimpleNamespace(state=SimpleNamespace(services=services))}
    sent = []

    async def send(message):
        sent.append(message)

    asyncio.run(CloseWhenDraining(app)(scope, None, send))
    return sent[0]["headers"]


def test_answers_say_connection_close_only_while_draining():
    assert _answer(False, [(b"x-a", b"1")]) == [(b"x-a", b"1")]
    assert _answer(True, [(b"x-a", b"1"), (b"connection", b"keep-alive")]) == [
        (b"x-a", b"1"), (b"connection", b"close")]
