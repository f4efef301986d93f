"""One request's tries across its pool: a 5xx is retried only on an untried backend and
counted once per request; a try's own time limit applies only while failover is left."""

import asyncio
import math

import pytest

from llmgw.balancer import LeastInFlightBalancer
from llmgw.errors import BackendUnavailable, BadGateway
from llmgw.resilience.breakers import Breakers
from llmgw.resilience.queue import FairQueue
from llmgw.resilience.retry import RetryableFailure
from llmgw.resilience.selector import BackendSelector
from llmgw.resilience.tries import Tries, TryLimits
from llmgw.routing import Backend, Model, Pool


def _selector(timeout=0.05, seqs=1, n=2):
    pool = Pool("p", tuple(Backend(f"b{i}", f"http://h{i}", seqs) for i in range(n)))
    model = Model("m", "m", (), pool, frozenset(), "o")
    breakers = Breakers([b.name for b in pool.backends], failure_threshold=5, recovery_secs=30)
    queue = FairQueue()
    balancer = LeastInFlightBalancer(eligible=lambda b: breakers.allows(b.name),
                                     bounded=True, on_release=lambda b: queue.offer("p"))
    return BackendSelector(balancer, breakers, queue, queue_timeout=timeout), model


def test_a_5xx_is_retried_only_on_an_untried_backend_and_counted_once_per_request():
    async def scenario():
        sel, model = _selector(seqs=4)
        for _ in range(3):  # three "poison" requests, each failed by both backends
            tries = Tries(sel, model, "a")
            first = (await tries.acquire())[0]
            failure = RetryableFailure(BadGateway("500"), "status")
            assert tries.status_failure(first, failure) is failure  # the other may answer
            sel.release(first)
            second = (await tries.acquire())[0]
            assert second is not first
            final = tries.status_failure(second, RetryableFailure(BadGateway("500"), "status"))
            assert isinstance(final, BadGateway)  # none left: the answer, not a retry
            sel.release(second)
        counts = [sel.breakers._cbs[name].fail_counter for name in ("b0", "b1")]
        assert sum(counts) == 3  # one per request, not one per attempt

    asyncio.run(scenario())


def test_after_a_5xx_no_untried_backend_in_rotation_means_that_5xx_is_the_answer():
    async def scenario():
        sel, model = _selector(seqs=4)
        tries = Tries(sel, model, "a")
        first = (await tries.acquire())[0]
        failure = RetryableFailure(BadGateway("500"), "status")
        assert tries.status_failure(first, failure) is failure
        sel.release(first)
        other = next(b for b in model.pool.backends if b is not first)
        for _ in range(5):
            sel.breakers.failure(other.name)  # the other replica's breaker opened meanwhile
        with pytest.raises(BadGateway):
            await tries.acquire()

    asyncio.run(scenario())


def test_without_a_5xx_an_empty_pool_is_reported_as_such():
    async def scenario():
        sel, model = _selector(n=1)
        for _ in range(5):
            sel.breakers.failure("b0")
        with pytest.raises(BackendUnavailable):
            await Tries(sel, model, "a").acquire()

    asyncio.run(scenario())


def test_a_5xx_makes_its_backend_suspect():
    async def scenario():
        sel, model = _selector(seqs=4)
        sel.suspects = type(sel.suspects)(60)
        tries = Tries(sel, model, "a")
        first = (await tries.acquire())[0]
        tries.status_failure(first, RetryableFailure(BadGateway("500"), "status"))
        assert sel.suspects.suspect(first.name)

    asyncio.run(scenario())


def test_failover_is_left_while_an_untried_sound_backend_could_serve():
    async def scenario():
        sel, model = _selector(seqs=4, n=3)
        tries = Tries(sel, model, "a")
        assert tries.failover_left()
        tried = []
        for _ in range(3):
            backend = (await tries.acquire())[0]
            tried.append(backend.name)
            sel.release(backend)
        assert sorted(tried) == ["b0", "b1", "b2"]  # each try went somewhere new
        assert not tries.failover_left()

    asyncio.run(scenario())


def test_a_transport_failure_may_go_back_to_a_tried_backend_a_5xx_may_not():
    async def scenario():
        sel, model = _selector(seqs=4, n=1)
        tries = Tries(sel, model, "a")
        only = (await tries.acquire())[0]
        sel.release(only)
        assert (await tries.acquire())[0] is only  # a dropped connection: the same one again
        sel.release(only)
        failure = RetryableFailure(BadGateway("500"), "status")
        assert isinstance(tries.status_failure(only, failure), BadGateway)
        with pytest.raises(BadGateway):
            await tries.acquire()

    asyncio.run(scenario())


def test_a_try_is_capped_only_while_another_backend_can_take_over():
    limits = TryLimits(stream_head=2, answer=60)
    assert limits.cap(stream=True, failover_left=True) == 2
    assert limits.cap(stream=False, failover_left=True) == 60
    assert limits.cap(stream=True, failover_left=False) == math.inf
    assert limits.cap(stream=False, failover_left=False) == math.inf
