"""Closing a connection whose client may still be sending: FIN after the answer, what arrives
is dropped, the socket closes on silence or at the bound; otherwise a plain close."""

from __future__ import annotations

import asyncio

import pytest

from llmgw import lingering
from llmgw.lingering import LingeringTransport


class Transport:
    def __init__(self, *, can_eof: bool = True) -> None:
        self.calls: list[str] = []
        self.closed = False
        self.can_eof = can_eof

    def write(self, data: bytes) -> None:
        self.calls.append("write")

    def write_eof(self) -> None:
        self.calls.append("write_eof")

    def can_write_eof(self) -> bool:
        return self.can_eof

    def resume_reading(self) -> None:
        self.calls.append("resume_reading")

    def close(self) -> None:
        self.calls.append("close")
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed


@pytest.fixture(autouse=True)
def short_linger(monkeypatch):
    monkeypatch.setattr(lingering, "LINGER_IDLE_SECS", 0.05)
    monkeypatch.setattr(lingering, "LINGER_MAX_SECS", 0.2)


def _run(test) -> None:
    async def main():
        await test(asyncio.get_running_loop())
    asyncio.run(main())


def test_a_close_between_requests_is_plain():
    async def test(loop):
        real = Transport()
        transport = LingeringTransport(real, loop, lambda: False)
        transport.write(b"answer")
        transport.close()
        assert real.calls == ["write", "close"] and transport.is_closing()
    _run(test)


def test_a_close_mid_request_sends_fin_reads_on_and_closes_once_the_client_is_silent():
    async def test(loop):
        real = Transport()
        transport = LingeringTransport(real, loop, lambda: True)
        transport.write(b"413")
        transport.close()
        assert real.calls == ["write", "write_eof", "resume_reading"] and not real.closed
        assert transport.is_closing() and transport.lingering
        for _ in range(3):  # still sending: kept reading
            await asyncio.sleep(0.03)
            transport.discard(b"rest of the body")
        assert not real.closed
        await asyncio.sleep(0.1)  # silent for longer than LINGER_IDLE_SECS
        assert real.closed and not transport.lingering
    _run(test)


def test_a_client_that_never_stops_sending_is_closed_at_the_bound():
    async def test(loop):
        real = Transport()
        transport = LingeringTransport(real, loop, lambda: True)
        transport.close()
        started = loop.time()
        while not real.closed and loop.time() - started < 2:
            transport.discard(b"x")
            await asyncio.sleep(0.01)
        assert real.closed and 0.15 <= loop.time() - started < 0.5
    _run(test)


def test_no_fin_possible_or_already_gone_means_a_plain_close():
    async def test(loop):
        real = Transport(can_eof=False)  # e.g. TLS
        LingeringTransport(real, loop, lambda: True).close()
        assert real.calls == ["close"]
        gone = Transport()
        gone.closed = True
        LingeringTransport(gone, loop, lambda: True).close()
        assert gone.calls == ["close"]
    _run(test)


def test_a_lost_connection_stops_the_wait_and_close_is_idempotent():
    async def test(loop):
        real = Transport()
        transport = LingeringTransport(real, loop, lambda: True)
        transport.close()
        transport.close()
        assert real.calls.count("write_eof") == 1
        transport.connection_lost()
        assert not transport.lingering
        await asyncio.sleep(0.1)
        assert not real.closed  # the timer was cancelled: nothing touches a dead transport
    _run(test)
