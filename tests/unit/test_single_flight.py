"""SingleFlight: concurrent callers of one key share one call; the next call after it lands
starts anew; a cancelled caller does not cancel the call for the others; a failure reaches
every caller."""

from __future__ import annotations

import asyncio

import pytest

from llmgw.single_flight import SingleFlight


def test_callers_share_one_call_per_key():
    async def main():
        calls = []
        flight: SingleFlight[int] = SingleFlight()

        async def call(key):
            calls.append(key)
            n = len(calls)  # which call this is
            await asyncio.sleep(0.01)
            return n
        got = await asyncio.gather(*(asyncio.shield(flight.run(k, lambda k=k: call(k)))
                                     for k in ["a"] * 20 + ["b"] * 5))
        assert calls == ["a", "b"] and set(got[:20]) == {1} and set(got[20:]) == {2}
        assert await flight.run("a", lambda: call("a")) == 3  # landed: a new call
    asyncio.run(main())


def test_a_cancelled_caller_leaves_the_call_to_the_others():
    async def main():
        flight: SingleFlight[str] = SingleFlight()
        release = asyncio.Event()

        async def call():
            await release.wait()
            return "done"
        first = asyncio.ensure_future(asyncio.shield(flight.run("k", call)))
        second = asyncio.ensure_future(asyncio.shield(flight.run("k", call)))
        await asyncio.sleep(0)
        first.cancel()
        release.set()
        assert await second == "done"
    asyncio.run(main())


def test_a_failure_reaches_every_caller():
    async def main():
        flight: SingleFlight[None] = SingleFlight()

        async def call():
            await asyncio.sleep(0.01)
            raise OSError("down")
        results = await asyncio.gather(*(asyncio.shield(flight.run("k", call)) for _ in range(3)),
                                       return_exceptions=True)
        assert all(isinstance(r, OSError) for r in results)
        unawaited = flight.run("k", call)  # nobody awaits it: no "never retrieved" warning
        await asyncio.sleep(0.05)
        assert unawaited.done()
    asyncio.run(main())
