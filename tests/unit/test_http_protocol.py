"""The worker's HTTP protocol: writes of one loop turn leave in one call (a response's head
and body together), closing sends what is held, everything else is the real transport's."""

from __future__ import annotations

import asyncio

from llmgw.http_protocol import CoalescingWriter


class Transport:
    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.closed = False

    def write(self, data: bytes) -> None:
        assert not self.closed, "written after close"
        self.writes.append(data)

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed

    def get_extra_info(self, name: str):
        return {"peername": ("127.0.0.1", 5)}.get(name)


def test_writes_of_one_turn_leave_together_and_later_turns_separately():
    async def main():
        real = Transport()
        writer = CoalescingWriter(real, asyncio.get_running_loop())
        writer.write(b"HTTP/1.1 200 OK\r\n\r\n")
        writer.write(b"body")
        assert real.writes == []  # held until the loop comes round
        await asyncio.sleep(0)
        assert real.writes == [b"HTTP/1.1 200 OK\r\n\r\nbody"]
        writer.write(b"event 1")
        await asyncio.sleep(0)
        writer.write(b"event 2")
        await asyncio.sleep(0)
        assert real.writes[1:] == [b"event 1", b"event 2"]  # a stream's events are not held back
    asyncio.run(main())


def test_close_sends_what_is_held_first_and_the_rest_is_the_real_transport():
    async def main():
        real = Transport()
        writer = CoalescingWriter(real, asyncio.get_running_loop())
        writer.write(b"last words")
        writer.close()
        assert real.writes == [b"last words"] and real.closed
        await asyncio.sleep(0)  # the scheduled flush finds nothing left
        assert real.writes == [b"last words"]
        assert writer.get_extra_info("peername") == ("127.0.0.1", 5)
    asyncio.run(main())


def test_nothing_is_written_once_the_connection_is_closing():
    async def main():
        real = Transport()
        writer = CoalescingWriter(real, asyncio.get_running_loop())
        writer.write(b"too late")
        real.closed = True  # the client went away in the same turn
        await asyncio.sleep(0)
        assert real.writes == []
    asyncio.run(main())
