"""Single flight: followers of a running backend call get its answer, or call themselves."""

from __future__ import annotations

import anyio

from llmgw.cache.collapse import Flights
from llmgw.cache.store import CachedAnswer


def test_followers_get_the_leaders_answer_or_call_themselves():
    async def main(leader_fails: bool):
        flights = Flights()
        flight = flights.lead("k")
        assert flights.lead("k") is None and flights.running("k") is flight
        answers = []

        async def follower():
            answers.append(await flights.running("k").wait())
        async with anyio.create_task_group() as tg:
            for _ in range(3):
                tg.start_soon(follower)
            await anyio.sleep(0.01)
            flights.land("k", flight, None if leader_fails else CachedAnswer(b"{}", 0))
        assert flights.running("k") is None
        return answers
    assert [a.body for a in anyio.run(main, False)] == [b"{}"] * 3
    assert anyio.run(main, True) == [None] * 3
