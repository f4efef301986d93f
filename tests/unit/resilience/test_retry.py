"""Retries before the first byte: the retry budget over a sliding window (failover free of it
while a sound untried backend is left), the tenacity-driven policy, and backoff with jitter."""

import asyncio
import random

import pytest

from llmgw.errors import BadGateway, UpstreamTimeout
from llmgw.resilience.retry import Backoff, RetryableFailure, RetryBudget, RetryPolicy


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _policy(ratio=10.0, max_retries=2, floor=0):
    async def no_sleep(_s):
        return None
    budget = RetryBudget(ratio, min_retries=floor, clock=Clock())
    return RetryPolicy(max_retries=max_retries, budget=budget,
                       backoff=Backoff(0.05, 1.0, random.Random(1)), sleep=no_sleep)


def _budget_policy(budget: RetryBudget, max_retries: int = 2) -> RetryPolicy:
    async def no_sleep(_s):
        return None
    return RetryPolicy(max_retries=max_retries, budget=budget,
                       backoff=Backoff(0.05, 1.0, random.Random(1)), sleep=no_sleep)


def _failing(calls: list[int]):
    async def attempt(n):
        calls.append(n)
        raise RetryableFailure(BadGateway(f"try {n}"), "status")
    return attempt


# ---- RetryBudget ----

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


def test_a_free_retry_counts_against_the_budgeted_ones_that_follow():
    budget = RetryBudget(0.2, window_secs=10, min_retries=0, clock=Clock())
    for _ in range(10):
        budget.record_request()
    assert budget.try_spend(free=True)  # failover: taken although the budget allows 2 in all
    assert budget.try_spend()
    assert not budget.try_spend()  # the free one used the first of the 2
    assert budget.try_spend(free=True)  # failover still goes, whatever is left


# ---- RetryPolicy ----

def test_retry_policy_retries_at_most_twice_then_raises_the_last_error():
    calls, reasons = [], []

    async def attempt(n):
        calls.append(n)
        raise RetryableFailure(BadGateway(f"try {n}"), "status")

    with pytest.raises(BadGateway, match="try 2"):
        asyncio.run(_policy().run(attempt, reasons.append))
    assert calls == [0, 1, 2] and reasons == ["status", "status"]


def test_retry_policy_returns_the_first_success_and_reports_each_retry_reason():
    reasons = []

    async def attempt(n):
        if n < 2:
            raise RetryableFailure(UpstreamTimeout("slow") if n else BadGateway("x"),
                                   "timeout" if n else "connect")
        return f"answer {n}"

    assert asyncio.run(_policy().run(attempt, reasons.append)) == "answer 2"
    assert reasons == ["connect", "timeout"]


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


def test_no_backoff_sleeps_past_the_time_left():
    slept = []

    async def sleep(secs):
        slept.append(secs)

    policy = RetryPolicy(max_retries=2, budget=RetryBudget(10.0, clock=Clock()),
                         backoff=Backoff(5.0, 5.0, random.Random(1)), sleep=sleep)
    with pytest.raises(BadGateway):
        asyncio.run(policy.run(_failing([]), lambda r: None, lambda: 0.01))
    assert slept and all(s <= 0.01 for s in slept)


def test_failover_to_a_sound_backend_needs_no_budget():
    budget = RetryBudget(0.0, min_retries=0, clock=Clock())  # an empty budget
    calls = []

    async def attempt(n):
        calls.append(n)
        if n == 0:
            raise RetryableFailure(BadGateway("500"), "status")
        return "served"

    assert asyncio.run(_budget_policy(budget).run(attempt, lambda r: None, free=lambda: True)) == "served"
    assert calls == [0, 1]


def test_failover_stays_within_max_retries():
    calls = []
    with pytest.raises(BadGateway, match="try 1"):
        asyncio.run(_budget_policy(RetryBudget(0.0, min_retries=0, clock=Clock()), max_retries=1)
                    .run(_failing(calls), lambda r: None, free=lambda: True))
    assert calls == [0, 1]


def test_with_no_sound_backend_left_retries_spend_the_budget():
    clock = Clock()
    budget = RetryBudget(0.2, window_secs=10, min_retries=0, clock=clock)
    policy = _budget_policy(budget, max_retries=1)
    calls = []
    # A whole pool failing: 50 requests, each retry asks the budget (20% of the requests).
    for _ in range(50):
        with pytest.raises(BadGateway):
            asyncio.run(policy.run(_failing(calls), lambda r: None, free=lambda: False))
    assert len(calls) <= 1.2 * 50 + 1  # 1 + ratio, the budget filling as requests arrive


def test_free_is_asked_after_each_failure():
    answers, calls = iter([True, False]), []
    budget = RetryBudget(0.0, min_retries=0, clock=Clock())
    with pytest.raises(BadGateway, match="try 1"):
        asyncio.run(_budget_policy(budget).run(_failing(calls), lambda r: None,
                                               free=lambda: next(answers)))
    assert calls == [0, 1]  # the second retry was not free and the budget was empty


# ---- Backoff ----

def test_backoff_is_exponential_with_jitter_and_capped():
    class State:
        def __init__(self, n):
            self.attempt_number = n
    backoff = Backoff(0.1, 0.3, random.Random(3))
    waits = [[backoff(State(n)) for _ in range(200)] for n in (1, 2, 3)]
    assert max(waits[0]) <= 0.1 and max(waits[1]) <= 0.2 and max(waits[2]) <= 0.3
    assert max(waits[1]) > 0.15 and min(waits[0]) < 0.05


def test_a_retryable_failure_carries_its_error_and_reason():
    error = BadGateway("backend said 502")
    failure = RetryableFailure(error, "status")
    assert failure.error is error and failure.reason == "status" and str(failure) == error.message
