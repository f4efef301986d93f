"""The batch lane's decisions: where a batch line may start (nothing waiting, under the share,
fresh figures or this worker's own count), and which running batch lines stop when realtime
fills a backend (youngest first, this process's share of the excess), answering Preempted."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import pytest

from llmgw.backend_state import StateView
from llmgw.backend_state.parse import Figures
from llmgw.batches.lane import BatchLane
from llmgw.errors import NoSpareCapacity, Preempted
from llmgw.observability.trace import Trace
from llmgw.routing import Backend


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _lane(share=0.75, most=32, processes=1, stale_after=3.0, eligible=lambda b: True):
    clock = Clock()
    backends = [Backend("b0", "http://127.0.0.1:1", 32), Backend("b1", "http://127.0.0.1:2", 32)]
    view = StateView([b.name for b in backends], stale_after=stale_after, clock=clock)
    lane = BatchLane(None, view, token=None, share=share, eligible=eligible, most=most,
                     processes=processes, clock=clock)
    model = SimpleNamespace(name="m", pool=SimpleNamespace(backends=backends))
    return lane, view, model, backends, clock


def _seen(view, name, running, waiting=0):
    view.record(name, Figures(running, waiting, None, None, None))


def test_a_line_starts_only_where_nothing_waits_and_the_share_is_free():
    lane, view, model, _, _ = _lane()
    _seen(view, "b0", 30)
    _seen(view, "b1", 10, waiting=1)
    with pytest.raises(NoSpareCapacity):
        lane.check_room(model)
    _seen(view, "b1", 23)  # under 0.75 x 32 = 24
    lane.check_room(model)


def test_without_fresh_figures_nothing_starts_and_with_the_view_off_own_counts_decide():
    lane, view, model, backends, clock = _lane()
    _seen(view, "b0", 0)
    _seen(view, "b1", 0)
    clock.now += 10  # stale
    with pytest.raises(NoSpareCapacity):
        lane.check_room(model)
    off, _, model_off, backends_off, _ = _lane(stale_after=0)
    backends_off[0].in_flight = backends_off[1].in_flight = 24
    with pytest.raises(NoSpareCapacity):
        off.check_room(model_off)
    backends_off[1].in_flight = 23
    off.check_room(model_off)


def test_unsound_backends_and_batch_switched_off_take_nothing():
    lane, view, model, _, _ = _lane(eligible=lambda b: b.name == "b0")
    _seen(view, "b0", 30)
    _seen(view, "b1", 0)
    with pytest.raises(NoSpareCapacity):
        lane.check_room(model)
    off, view, model, _, _ = _lane(most=0)
    _seen(view, "b0", 0)
    with pytest.raises(NoSpareCapacity):
        off.check_room(model)


def test_realtime_filling_a_backend_stops_the_youngest_batch_lines_there():
    lane, view, model, backends, clock = _lane(processes=2)
    ended: dict[int, object] = {}

    async def scenario():
        gates = [asyncio.Event() for _ in range(4)]

        async def line(i: int, backend: str):
            trace = Trace(f"r{i}")
            trace.backend = backend
            clock.now += 1  # started one after another: 3 is the youngest

            async def call():
                await gates[i].wait()
                return i
            try:
                ended[i] = await lane.preemptible(call, trace)()
            except Preempted as exc:
                ended[i] = exc
        tasks = [asyncio.create_task(line(i, "b0" if i < 3 else "b1")) for i in range(4)]
        await asyncio.sleep(0)
        assert lane.watching("b0") and lane.watching("b1")
        _seen(view, "b0", 31, waiting=2)   # line at 32 x (1 + 0.75) / 2 = 28: 5 over
        assert lane.preempt(backends[0]) == 3  # ceil(5 / 2 processes) = 3: all of b0's
        _seen(view, "b1", 28)
        assert lane.preempt(backends[1]) == 0  # at the line, not over
        gates[3].set()
        await asyncio.gather(*tasks)
    asyncio.run(scenario())
    assert all(isinstance(ended[i], Preempted) for i in range(3)) and ended[3] == 3
    assert not lane.watching("b0")


def test_only_the_excess_stops_youngest_first():
    lane, view, _, backends, clock = _lane()
    order: list[int] = []

    async def scenario():
        release = asyncio.Event()

        async def line(i: int):
            trace = Trace(f"r{i}")
            trace.backend = "b0"
            clock.now += 1

            async def call():
                await release.wait()
            try:
                await lane.preemptible(call, trace)()
            except Preempted:
                order.append(i)
        tasks = [asyncio.create_task(line(i)) for i in range(4)]
        await asyncio.sleep(0)
        _seen(view, "b0", 30)  # 2 over the line of 28
        assert lane.preempt(backends[0]) == 2
        release.set()
        await asyncio.gather(*tasks)
    asyncio.run(scenario())
    assert sorted(order) == [2, 3]


def test_a_burst_of_lines_on_one_reading_never_overfills_a_backend():
    lane, view, model, _, clock = _lane(processes=2)
    model.pool.backends = model.pool.backends[:1]
    _seen(view, "b0", 10)  # room for 24 - 10 = 14 more, shared by 2 processes: 7 each
    started = 0
    for _ in range(20):
        try:
            lane.check_room(model)
            started += 1
        except NoSpareCapacity:
            pass
    assert started == 7
    clock.now += 0.5
    _seen(view, "b0", 24)  # the next reading counts them: no room
    with pytest.raises(NoSpareCapacity):
        lane.check_room(model)


def test_a_line_that_ended_since_the_reading_leaves_its_slot_to_the_next():
    lane, view, model, _, clock = _lane()
    model.pool.backends = model.pool.backends[:1]
    _seen(view, "b0", 24)  # full: 0.75 x 32
    with pytest.raises(NoSpareCapacity):
        lane.check_room(model)

    async def one_line():
        trace = Trace("r")
        trace.backend = "b0"

        async def call():
            return 1
        return await lane.preemptible(call, trace)()
    clock.now += 0.01
    assert asyncio.run(one_line()) == 1  # it was one of the 24; it ended after the reading
    lane.check_room(model)               # so the next line takes its slot
    with pytest.raises(NoSpareCapacity):
        lane.check_room(model)           # and only that one
    clock.now += 0.05
    _seen(view, "b0", 24)                # a reading after the end already leaves it out
    with pytest.raises(NoSpareCapacity):
        lane.check_room(model)
