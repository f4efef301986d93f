"""The fair admission queue: a freed slot goes to the next organisation in turn, a woken
waiter holds its slot as a hand-off, and waiting ends with the timeout or the client."""

import asyncio

from llmgw.observability.metrics import Metrics
from llmgw.resilience.queue import FairQueue


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


def test_a_woken_waiter_is_a_promise_until_it_takes_its_slot():
    async def scenario():
        q = FairQueue()
        waiter = asyncio.create_task(q.wait("p", "o", 5))
        await asyncio.sleep(0)
        q.offer("p")
        assert await waiter
        assert q.depth("p") == 0 and q.promised("p") == 1 and q.busy("p")  # newcomers queue
        q.taken("p")
        assert q.promised("p") == 0 and not q.busy("p")
        q.taken("p")  # never below zero
        assert q.promised("p") == 0

    asyncio.run(scenario())


def test_an_offer_with_nobody_waiting_is_not_kept():
    async def scenario():
        q = FairQueue()
        q.offer("p")
        assert q.promised("p") == 0 and not q.busy("p")
        assert not await q.wait("p", "o", 0.01)

    asyncio.run(scenario())


def test_a_client_leaving_after_being_offered_loses_no_slot():
    async def scenario():
        q = FairQueue()
        leaving = asyncio.create_task(q.wait("p", "a", 5))
        staying = asyncio.create_task(q.wait("p", "b", 5))
        await asyncio.sleep(0)
        q.offer("p")  # to "a", first in turn
        leaving.cancel()  # ... whose client leaves before taking it
        left = await asyncio.gather(leaving, return_exceptions=True)
        if isinstance(left[0], asyncio.CancelledError):
            assert await asyncio.wait_for(staying, 1)  # the slot was passed on to "b"
        else:  # asyncio.wait_for may keep a result that came with the cancellation
            assert left == [True] and not staying.done()
            staying.cancel()
            await asyncio.gather(staying, return_exceptions=True)
        assert q.promised("p") == 1  # one slot offered, one holder: none lost, none doubled

    asyncio.run(scenario())


def test_pools_queue_apart_and_the_gauges_follow():
    metrics = Metrics(tenant_labels=False)

    async def scenario():
        q = FairQueue(metrics=metrics)
        waiter = asyncio.create_task(q.wait("p", "o", 5))
        await asyncio.sleep(0)
        assert q.depth("p") == 1 and q.depth("other") == 0 and not q.busy("other")
        assert metrics.registry.get_sample_value("llmgw_queue_depth", {"pool": "p"}) == 1
        q.offer("other")
        assert not waiter.done()
        q.offer("p")
        assert await waiter
        assert metrics.registry.get_sample_value("llmgw_queue_depth", {"pool": "p"}) == 0
        assert metrics.registry.get_sample_value("llmgw_queue_wait_seconds_count", {"pool": "p"}) == 1

    asyncio.run(scenario())
