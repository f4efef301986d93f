"""Breakers, retry budget, retry policy and the fair queue, driven by an injected clock."""

import asyncio
import random

import pytest

from llmgw.balancer import LeastInFlightBalancer
from llmgw.errors import BackendUnavailable, BadGateway, NoCapacity, UpstreamTimeout
from llmgw.resilience.breakers import Breakers
from llmgw.resilience.queue import FairQueue
from llmgw.resilience.retry import Backoff, RetryableFailure, RetryBudget, RetryPolicy
from llmgw.resilience.selector import BackendSelector
from llmgw.resilience.tries import Tries
from llmgw.routing import Backend, Model, Pool


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


def test_retry_budget_caps_retries_at_ratio_over_sliding_window():
    clock = Clock()
    budget = RetryBudget(0.2, window_secs=10, min_retries=0, clock=clock)
    for _ in range(10):
        budget.record_request()
    assert [budget.try_spend() for _ in range(3)] == [True, True, False]
    clock.now += 10.5  # the window slid past everything
    assert not budget.try_spend()
    for _ in range(5):
        budget.record_request()
    assert budget.try_spend() and not budget.try_spend()


def test_retry_budget_floor_lets_a_quiet_worker_fail_over():
    clock = Clock()
    budget = RetryBudget(0.2, window_secs=10, min_retries=3, clock=clock)
    budget.record_request()  # one request: 20% of it is no retry at all, the floor allows 3
    assert [budget.try_spend() for _ in range(4)] == [True, True, True, False]
    clock.now += 10.5
    assert budget.try_spend()  # the floor is per window


def _policy(ratio=10.0, max_retries=2, floor=0):
    async def no_sleep(_s):
        return None
    budget = RetryBudget(ratio, min_retries=floor, clock=Clock())
    return RetryPolicy(max_retries=max_retries, budget=budget,
                       backoff=Backoff(0.05, 1.0, random.Random(1)), sleep=no_sleep)


def test_retry_policy_retries_at_most_twice_then_raises_the_last_error():
    calls, reasons = [], []

    async def attempt(n):
        calls.append(n)
        raise RetryableFailure(BadGateway(f"try {n}"), "status")

    with pytest.raises(BadGateway, match="try 2"):
        asyncio.run(_policy().run(attempt, reasons.append))
    assert calls == [0, 1, 2] and reasons == ["status", "status"]


def test_retry_policy_does_not_retry_other_errors_or_beyond_the_budget():
    calls = []

    async def not_retryable(n):
        calls.append(n)
        raise BadGateway("no")

    with pytest.raises(BadGateway):
        asyncio.run(_policy().run(not_retryable, lambda r: None))
    assert calls == [0]

    async def retryable(n):
        calls.append(n)
        raise RetryableFailure(BadGateway("x"), "connect")

    calls.clear()
    with pytest.raises(BadGateway):
        asyncio.run(_policy(ratio=0.0).run(retryable, lambda r: None))
    assert calls == [0]


def test_retry_policy_starts_no_retry_once_the_shared_deadline_is_spent():
    calls, left = [], [1.0]

    async def slow(n):
        calls.append(n)
        left[0] -= 0.6  # each attempt takes 0.6 of the 1.0 the attempts share
        raise RetryableFailure(UpstreamTimeout(f"try {n}"), "timeout")

    with pytest.raises(UpstreamTimeout, match="try 1"):
        asyncio.run(_policy(max_retries=5).run(slow, lambda r: None, lambda: left[0]))
    assert calls == [0, 1]


def test_backoff_is_exponential_with_jitter_and_capped():
    class State:
        def __init__(self, n):
            self.attempt_number = n
    backoff = Backoff(0.1, 0.3, random.Random(3))
    waits = [[backoff(State(n)) for _ in range(200)] for n in (1, 2, 3)]
    assert max(waits[0]) <= 0.1 and max(waits[1]) <= 0.2 and max(waits[2]) <= 0.3
    assert max(waits[1]) > 0.15 and min(waits[0]) < 0.05


def test_fair_queue_serves_organisations_round_robin():
    async def scenario():
        q = FairQueue()
        served = []

        async def waiter(org, i):
            assert await q.wait("p", org, 5)
            q.taken("p")
            served.append(org)

        tasks = [asyncio.create_task(waiter("big", i)) for i in range(10)]
        tasks += [asyncio.create_task(waiter("small", i)) for i in range(2)]
        await asyncio.sleep(0)
        assert q.depth("p") == 12 and q.busy("p")
        for _ in range(4):
            q.offer("p")
            await asyncio.sleep(0.01)
        assert served == ["big", "small", "big", "small"]
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        assert q.depth("p") == 0

    asyncio.run(scenario())


def test_fair_queue_times_out():
    async def scenario():
        q = FairQueue()
        assert not await q.wait("p", "o", 0.01)
        assert q.depth("p") == 0 and not q.busy("p")

    asyncio.run(scenario())


def _selector(timeout=0.05, healthy=True, seqs=1):
    pool = Pool("p", (Backend("b0", "http://x", seqs), Backend("b1", "http://y", seqs)))
    model = Model("m", "m", (), pool, frozenset(), "o")
    breakers = Breakers(["b0", "b1"], failure_threshold=5, recovery_secs=30)
    queue = FairQueue()
    balancer = LeastInFlightBalancer(eligible=lambda b: healthy and breakers.allows(b.name),
                                     bounded=True, on_release=lambda b: queue.offer("p"))
    return BackendSelector(balancer, breakers, queue, queue_timeout=timeout), model


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


def test_selector_prefers_an_untried_backend():
    async def scenario():
        sel, model = _selector(seqs=4)
        for _ in range(5):
            backend = (await sel.acquire(model, "a", frozenset({"b0"})))[0]
            assert backend.name == "b1"
            sel.release(backend)

    asyncio.run(scenario())


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
