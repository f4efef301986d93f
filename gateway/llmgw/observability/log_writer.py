"""Log lines leave the event loop through a bounded queue and one writer thread.

A worker must never wait on its log sink: stdout is a pipe to Docker's log driver or a
terminal, and a slow reader would otherwise stall every request mid-flight. The event loop
only appends to a queue; the thread writes whatever has gathered in one call. When the sink
is so slow that the queue fills, lines are dropped and counted, and a line saying how many
were lost is written once the sink keeps up again.
"""

from __future__ import annotations

import atexit
import queue
import threading
import time
from typing import TextIO

import orjson

_STOP = object()
# Once woken by a line, the thread waits this long for others before writing: one wake-up
# and one write per batch rather than per line (a wake-up per line cost each request two
# context switches and a GIL hand-over). Lines leave at most this much later.
GATHER_SECS = 0.02


class QueuedWriter:
    """A write-only file for structlog's WriteLogger."""

    def __init__(self, stream: TextIO, *, max_lines: int = 20_000) -> None:
        self._stream = stream
        self._queue: queue.Queue = queue.Queue(maxsize=max_lines)
        self.dropped = 0
        self._thread = threading.Thread(target=self._run, name="log-writer", daemon=True)
        self._thread.start()
        atexit.register(self.close)  # lines still queued at exit are written, not lost

    def write(self, text: str) -> None:
        try:
            self._queue.put_nowait(text)
        except queue.Full:
            self.dropped += 1

    def flush(self) -> None:
        """Nothing to do here: the writer thread flushes after each batch."""

    def close(self, timeout: float = 5.0) -> None:
        if self._thread.is_alive():
            self._queue.put(_STOP)
            self._thread.join(timeout)

    def _run(self) -> None:
        while True:
            batch = [self._queue.get()]
            if batch[0] is not _STOP:
                time.sleep(GATHER_SECS)
            while len(batch) < 5000:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            stop = _STOP in batch
            lines = [line for line in batch if line is not _STOP]
            if self.dropped:
                dropped, self.dropped = self.dropped, 0
                lines.append(orjson.dumps({"event": "log_lines_dropped", "count": dropped,
                                           "level": "warning"}).decode() + "\n")
            try:
                self._stream.write("".join(lines))
                self._stream.flush()
            except (OSError, ValueError):  # the sink is gone (closed pipe): nothing to log to
                pass
            if stop:
                return
