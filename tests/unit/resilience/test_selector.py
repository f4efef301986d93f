"""Choosing the backend for one attempt: a sound one with a free slot, else a fair wait; an
untried one first; suspects last; and capacity handed on when it comes back."""

import asyncio

import pytest

from llmgw.balancer import LeastInFlightBalancer
from llmgw.errors import BackendUnavailable, NoCapacity
from llmgw.observability.metrics import Metrics
from llmgw.resilience.breakers import Breakers
from llmgw.resilience.queue import FairQueue
from llmgw.resilience.selector import BackendSelector
from llmgw.resilience.suspects import Suspects
from llmgw.routing import Backend, Model, Pool


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _selector(timeout=0.05, healthy=True, seqs=1, suspects=None, metrics=None, clock=None):
    pool = Pool("p", (Backend("b0", "http://x", seqs), Backend("b1", "http://y", seqs)))
    model = Model("m", "m", (), pool, frozenset(), "o")
    breakers = Breakers(["b0", "b1"], failure_threshold=5, recovery_secs=30,
                        **({"clock": clock} if clock else {}))
    queue = FairQueue()
    balancer = LeastInFlightBalancer(eligible=lambda b: healthy and breakers.allows(b.name),
                                     bounded=True, on_release=lambda b: queue.offer("p"))
    return BackendSelector(balancer, breakers, queue, queue_timeout=timeout, suspects=suspects,
                           metrics=metrics), model


def test_selector_queues_when_full_and_hands_freed_slots_on():
    async def scenario():
        sel, model = _selector(timeout=1)
        first = (await sel.acquire(model, "a"))[0]
        second = (await sel.acquire(model, "a"))[0]
        assert {first.name, second.name} == {"b0", "b1"}
        waiting = asyncio.create_task(sel.acquire(model, "b"))
        await asyncio.sleep(0.01)
        assert sel.queue.depth("p") == 1
        sel.release(first)
        assert (await waiting)[0] is first

    asyncio.run(scenario())


def test_selector_no_capacity_after_timeout_and_no_backend_at_once():
    async def scenario():
        sel, model = _selector(timeout=0.05)
        await sel.acquire(model, "a")
        await sel.acquire(model, "a")
        with pytest.raises(NoCapacity) as exc:
            await sel.acquire(model, "a")
        assert exc.value.status == 503 and exc.value.headers["Retry-After"]
        down, model = _selector(healthy=False)
        with pytest.raises(BackendUnavailable) as exc:
            await down.acquire(model, "a")
        assert not isinstance(exc.value, NoCapacity) and exc.value.headers["Retry-After"]

    asyncio.run(scenario())


def test_a_refusal_for_no_capacity_is_counted_for_its_organisation():
    metrics = Metrics(tenant_labels=True)

    async def scenario():
        sel, model = _selector(timeout=0.01, metrics=metrics)
        await sel.acquire(model, "org1")
        await sel.acquire(model, "org1")
        with pytest.raises(NoCapacity):
            await sel.acquire(model, "org1")

    asyncio.run(scenario())
    assert metrics.registry.get_sample_value(
        "llmgw_rejections_total", {"org": "org1", "reason": "no_capacity"}) == 1


def test_selector_prefers_an_untried_backend():
    async def scenario():
        sel, model = _selector(seqs=4)
        for _ in range(5):
            backend = (await sel.acquire(model, "a", frozenset({"b0"})))[0]
            assert backend.name == "b1"
            sel.release(backend)

    asyncio.run(scenario())


def test_a_tried_backend_serves_again_unless_it_is_avoided():
    async def scenario():
        sel, model = _selector(seqs=4)
        tried = frozenset({"b0", "b1"})
        backend = (await sel.acquire(model, "a", exclude=tried))[0]  # transport retries may
        sel.release(backend)
        assert (await sel.acquire(model, "a", exclude=tried, avoid=frozenset({"b0"})))[0].name == "b1"
        with pytest.raises(BackendUnavailable):  # every backend ruled out by a 5xx
            await sel.acquire(model, "a", exclude=tried, avoid=tried)

    asyncio.run(scenario())


def test_a_suspect_gets_no_first_try_while_a_sound_backend_has_room():
    async def scenario():
        clock = Clock()
        suspects = Suspects(10, clock=clock)
        sel, model = _selector(seqs=2, suspects=suspects)
        suspects.failed("b0")
        picked = [(await sel.acquire(model, "a"))[0].name for _ in range(3)]
        assert picked == ["b1", "b1", "b0"]  # b0 only once b1 is full
        assert not sel.sound_left(model, frozenset({"b1"}))
        clock.now += 10  # held long enough
        assert sel.sound_left(model, frozenset({"b1"}))

    asyncio.run(scenario())


def test_sound_left_counts_neither_excluded_nor_broken_backends():
    sel, model = _selector(seqs=1)
    assert sel.sound_left(model, frozenset({"b0"}))
    for _ in range(5):
        sel.breakers.failure("b1")
    assert not sel.sound_left(model, frozenset({"b0"}))
    assert sel.sound_left(model, frozenset())  # full or not: it could serve


def test_wake_offers_only_free_slots_not_already_promised():
    async def scenario():
        sel, model = _selector(timeout=5, seqs=1)
        held = [(await sel.acquire(model, org))[0] for org in ("a", "a")]
        waiters = [asyncio.create_task(sel.acquire(model, org)) for org in ("b", "c", "d")]
        await asyncio.sleep(0.01)
        assert sel.queue.depth("p") == 3
        sel.wake(model.pool)  # nothing free: nobody woken
        await asyncio.sleep(0.01)
        assert sel.queue.depth("p") == 3 and sel.queue.promised("p") == 0
        held[0].in_flight -= 1  # a slot freed without a release (as a backend coming back)
        sel.wake(model.pool)
        sel.wake(model.pool)  # already promised: not offered twice
        await asyncio.sleep(0.01)
        assert sum(w.done() for w in waiters) == 1 and sel.queue.depth("p") == 2
        for w in waiters:
            w.cancel()
        await asyncio.gather(*waiters, return_exceptions=True)

    asyncio.run(scenario())


def test_a_recovered_backend_is_sound_again_and_its_breaker_lets_a_trial_through():
    clock = Clock()
    suspects = Suspects(60, clock=clock)
    sel, model = _selector(suspects=suspects, clock=clock)
    suspects.failed("b0")
    for _ in range(5):
        sel.breakers.failure("b0")
    assert not sel.breakers.allows("b0")
    sel.recovered(model.pool.backends[0], model.pool)
    assert sel.breakers.state("b0") == "half-open" and not suspects.suspect("b0")
