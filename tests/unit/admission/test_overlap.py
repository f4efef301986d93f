"""A backend call started beside its admission: the call starts with the admission only when
asked to, its answer waits for the ticket, and a refusal cancels the call and frees what it
had opened (AdmissionGate.may_start_early, which says when, is tested in test_gate.py)."""

import asyncio

import pytest

from llmgw.admission.gate import Ticket
from llmgw.admission.overlap import admit_beside, free_if_finished
from llmgw.errors import RateLimited


def test_a_call_that_finished_as_its_caller_left_is_freed():
    freed = []

    async def discard(result):
        freed.append(result)

    async def main():
        async def opened():
            return "stream"

        async def failed():
            raise ConnectionError("down")
        done, broken = asyncio.create_task(opened()), asyncio.create_task(failed())
        slow = asyncio.create_task(asyncio.sleep(10))
        await asyncio.wait((done, broken), timeout=1)
        slow.cancel()
        await asyncio.wait((slow,))
        for task in (done, broken, slow):
            await free_if_finished(task, discard)
    asyncio.run(main())
    assert freed == ["stream"]


def _ticket() -> Ticket:
    return Ticket("rid", "org1", "k1", 10, {}, None)


def test_without_room_the_call_starts_only_after_admission():
    events = []

    async def admit():
        events.append("admit")
        await asyncio.sleep(0.01)
        events.append("admitted")
        return _ticket()

    async def call():
        events.append("call")
        return "answer"

    async def main():
        ticket, pending = await admit_beside(admit(), call, early=False)
        assert await pending == "answer"
    asyncio.run(main())
    assert events == ["admit", "admitted", "call"]


def test_an_early_call_runs_during_admission_and_its_answer_waits_for_the_ticket():
    events = []

    async def admit():
        await asyncio.sleep(0.05)
        events.append("admitted")
        return _ticket()

    async def call():
        events.append("call done")
        return "answer"

    async def main():
        ticket, pending = await admit_beside(admit(), call, early=True)
        assert isinstance(ticket, Ticket) and await pending == "answer"
    asyncio.run(main())
    assert events == ["call done", "admitted"]


def test_a_refusal_cancels_a_running_call():
    state = {}

    async def admit():
        await asyncio.sleep(0.02)
        raise RateLimited("limit_rpm", 1, {})

    async def call():
        try:
            await asyncio.sleep(10)  # the backend, still generating
        except asyncio.CancelledError:
            state["cancelled"] = True
            raise

    async def main():
        with pytest.raises(RateLimited):
            await admit_beside(admit(), call, early=True)
    asyncio.run(main())
    assert state == {"cancelled": True}


def test_a_refusal_frees_what_a_finished_call_opened_and_ignores_a_failed_one():
    freed = []

    async def refuse():
        await asyncio.sleep(0.02)
        raise RateLimited("limit_rpm", 1, {})

    async def opened():
        return "stream"

    async def failed():
        raise ConnectionError("backend down")

    async def discard(stream):
        freed.append(stream)

    async def main():
        for call in (opened, failed):
            with pytest.raises(RateLimited):
                await admit_beside(refuse(), call, early=True, discard=discard)
    asyncio.run(main())
    assert freed == ["stream"]
