"""Failover retries: free of the retry budget while a sound untried backend is left, budgeted
once the pool is failing; a try's own time limit only while another backend can take over."""

import asyncio
import math
import random

import pytest

from llmgw.errors import BadGateway
from llmgw.resilience.retry import Backoff, RetryableFailure, RetryBudget, RetryPolicy
from llmgw.resilience.tries import TryLimits


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _policy(budget: RetryBudget, max_retries: int = 2) -> RetryPolicy:
    async def no_sleep(_s):
        return None
    return RetryPolicy(max_retries=max_retries, budget=budget,
                       backoff=Backoff(0.05, 1.0, random.Random(1)), sleep=no_sleep)


def _failing(calls: list[int]):
    async def attempt(n):
        calls.append(n)
        raise RetryableFailure(BadGateway(f"try {n}"), "status")
    return attempt


def test_failover_to_a_sound_backend_needs_no_budget():
    budget = RetryBudget(0.0, min_retries=0, clock=Clock())  # an empty budget
    calls = []

    async def attempt(n):
        calls.append(n)
        if n == 0:
            raise RetryableFailure(BadGateway("500"), "status")
        return "served"

    assert asyncio.run(_policy(budget).run(attempt, lambda r: None, free=lambda: True)) == "served"
    assert calls == [0, 1]


def test_a_free_retry_counts_against_the_budgeted_ones_that_follow():
    budget = RetryBudget(0.2, window_secs=10, min_retries=0, clock=Clock())
    for _ in range(10):
        budget.record_request()
    assert budget.try_spend(free=True)  # failover: taken although the budget allows 2 in all
    assert budget.try_spend()
    assert not budget.try_spend()  # the free one used the first of the 2
    assert budget.try_spend(free=True)  # failover still goes, whatever is left


def test_failover_stays_within_max_retries():
    calls = []
    with pytest.raises(BadGateway, match="try 1"):
        asyncio.run(_policy(RetryBudget(0.0, min_retries=0, clock=Clock()), max_retries=1)
                    .run(_failing(calls), lambda r: None, free=lambda: True))
    assert calls == [0, 1]


def test_with_no_sound_backend_left_retries_spend_the_budget():
    clock = Clock()
    budget = RetryBudget(0.2, window_secs=10, min_retries=0, clock=clock)
    policy = _policy(budget, max_retries=1)
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
        asyncio.run(_policy(budget).run(_failing(calls), lambda r: None,
                                        free=lambda: next(answers)))
    assert calls == [0, 1]  # the second retry was not free and the budget was empty


def test_a_try_is_capped_only_while_another_backend_can_take_over():
    limits = TryLimits(stream_head=2, answer=60)
    assert limits.cap(stream=True, failover_left=True) == 2
    assert limits.cap(stream=False, failover_left=True) == 60
    assert limits.cap(stream=True, failover_left=False) == math.inf
    assert limits.cap(stream=False, failover_left=False) == math.inf
