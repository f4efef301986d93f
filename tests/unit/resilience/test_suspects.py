"""Suspects: a failed backend is held back from first tries until it serves or the hold ends;
the selector prefers sound backends and says when a sound untried one is left."""

import asyncio

from llmgw.balancer import LeastInFlightBalancer
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


def test_a_failure_makes_a_backend_suspect_until_it_serves_or_the_hold_ends():
    clock = Clock()
    s = Suspects(10, clock=clock)
    assert s.among(["a", "b"]) == frozenset()
    s.failed("a")
    assert s.suspect("a") and not s.suspect("b") and s.among(["a", "b"]) == {"a"}
    s.served("a")
    assert not s.suspect("a")
    s.failed("a")
    clock.now += 9.9
    assert s.suspect("a")
    s.failed("a")  # failed again: held from this failure on
    clock.now += 9.9
    assert s.suspect("a") and s.snapshot() == {"a": True}
    clock.now += 0.2
    assert not s.suspect("a") and s.among(["a"]) == frozenset() and s.snapshot() == {}


def test_a_zero_hold_never_holds_anything_back():
    s = Suspects(0, clock=Clock())
    s.failed("a")
    assert not s.suspect("a")


def _selector(clock, seqs=4, healthy=True):
    pool = Pool("p", (Backend("b0", "http://x", seqs), Backend("b1", "http://y", seqs)))
    model = Model("m", "m", (), pool, frozenset(), "o")
    breakers = Breakers(["b0", "b1"], failure_threshold=5, recovery_secs=30, clock=clock)
    queue = FairQueue(clock=clock)
    balancer = LeastInFlightBalancer(eligible=lambda b: healthy and breakers.allows(b.name),
                                     bounded=True, on_release=lambda b: queue.offer("p"))
    sel = BackendSelector(balancer, breakers, queue, queue_timeout=0.05,
                          suspects=Suspects(10, clock=clock), clock=clock)
    return sel, model


def test_first_tries_avoid_a_suspect_while_a_sound_backend_has_a_free_slot():
    async def scenario():
        clock = Clock()
        sel, model = _selector(clock, seqs=2)
        sel.suspects.failed("b0")
        taken = [(await sel.acquire(model, "a"))[0] for _ in range(2)]
        assert [b.name for b in taken] == ["b1", "b1"]
        # b1 is full: the suspect still serves rather than the request waiting.
        taken.append((await sel.acquire(model, "a"))[0])
        assert taken[-1].name == "b0"
        for backend in taken:
            sel.release(backend)
        clock.now += 10  # the hold is over: both are candidates again
        names = set()
        for _ in range(40):
            backend = (await sel.acquire(model, "a"))[0]
            names.add(backend.name)
            sel.release(backend)
        assert names == {"b0", "b1"}

    asyncio.run(scenario())


def test_a_backend_back_from_a_passing_health_check_is_no_longer_suspect():
    async def scenario():
        clock = Clock()
        sel, model = _selector(clock, seqs=2)
        sel.suspects.failed("b0")  # its latest request failed: then it went down and came back
        sel.recovered(model.pool.backends[0], model.pool)
        names = set()
        for _ in range(40):
            backend = (await sel.acquire(model, "a"))[0]
            names.add(backend.name)
            sel.release(backend)
        assert names == {"b0", "b1"}  # within the hold, first tries reach b0 again

    asyncio.run(scenario())


def test_sound_left_counts_only_untried_sound_backends_in_rotation():
    clock = Clock()
    sel, model = _selector(clock)
    assert sel.sound_left(model, frozenset({"b0"}))
    sel.suspects.failed("b1")
    assert not sel.sound_left(model, frozenset({"b0"}))  # b1 failed its latest try
    assert sel.sound_left(model, frozenset())
    sel.suspects.served("b1")
    for _ in range(5):
        sel.breakers.failure("b1")  # breaker open: out of rotation
    assert not sel.sound_left(model, frozenset({"b0"}))
    down, model = _selector(clock, healthy=False)
    assert not down.sound_left(model, frozenset())
