"""QueuedWriter: lines reach the sink in order, a stalled sink never blocks the writer's
caller (lines are dropped and counted instead), and closing writes what is queued."""

from __future__ import annotations

import io
import threading
import time

import orjson

from llmgw.observability.log_writer import QueuedWriter


class StalledSink(io.StringIO):
    """A sink whose writes block until released: a log reader that stopped reading."""

    def __init__(self) -> None:
        super().__init__()
        self.release = threading.Event()

    def write(self, text: str) -> int:
        self.release.wait()
        return super().write(text)


def test_lines_arrive_in_order_and_close_flushes():
    sink = io.StringIO()
    writer = QueuedWriter(sink)
    for i in range(500):
        writer.write(f"line {i}\n")
    writer.close()
    assert sink.getvalue().splitlines() == [f"line {i}" for i in range(500)]


def test_a_stalled_sink_drops_and_counts_instead_of_blocking():
    sink = StalledSink()
    writer = QueuedWriter(sink, max_lines=10)
    started = time.monotonic()
    for i in range(100):
        writer.write(f"line {i}\n")  # must return at once although nothing can be written
    assert time.monotonic() - started < 1.0
    assert writer.dropped >= 80
    sink.release.set()
    writer.close()
    lines = sink.getvalue().splitlines()
    report = orjson.loads(lines[-1])
    assert report["event"] == "log_lines_dropped"
    assert report["count"] + len(lines) - 1 == 100  # every line written or counted
    assert lines[0] == "line 0"
