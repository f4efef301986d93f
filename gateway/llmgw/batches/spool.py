"""Where a batch's results wait until it is finalised: spool files on disk, one per runner per
job, appended to and synced before a line is marked done in Redis (done.lua); and the
finaliser, which writes the output and error files from them, one line per input line.

A spool line is `<line> <attempt> <0|1>\t<output line JSON>\n` (1: it goes to the error
file). A runner killed mid-write leaves at most a torn last line, whose line was never marked
done: another attempt runs it, and the finaliser takes the attempt done.lua recorded.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import anyio
import orjson

from .validate import read_span

MAX_PENDING = 512  # records written and synced together at most


def batch_dir(root: Path, org_id: str, batch_id: str) -> Path:
    return root / "batches" / org_id / batch_id


class Spool:
    """Appends results for one runner, many at a time: records that arrive while a sync runs
    are written and synced together by the next (group commit), each caller waking once its
    record is on disk."""

    def __init__(self, root: Path, runner_id: str) -> None:
        self._root, self._runner = root, runner_id
        self._pending: list[tuple[Path, bytes, anyio.Event]] = []
        self._writing = False

    def path(self, org_id: str, batch_id: str) -> Path:
        return batch_dir(self._root, org_id, batch_id) / f"spool-{self._runner}.jsonl"

    async def append(self, org_id: str, batch_id: str, line: int, attempt: int, error: bool,
                     output: dict) -> None:
        record = b"%d %d %d\t%s\n" % (line, attempt, int(error), orjson.dumps(output))
        done = anyio.Event()
        self._pending.append((self.path(org_id, batch_id), record, done))
        if not self._writing:
            self._writing = True
            try:
                while self._pending:
                    taken, self._pending = self._pending[:MAX_PENDING], self._pending[MAX_PENDING:]
                    await anyio.to_thread.run_sync(_write_synced, [(p, r) for p, r, _ in taken])
                    for _, _, event in taken:
                        event.set()
            finally:
                self._writing = False
        await done.wait()


def _write_synced(records: list[tuple[Path, bytes]]) -> None:
    by_path: dict[Path, list[bytes]] = {}
    for path, record in records:
        by_path.setdefault(path, []).append(record)
    for path, chunks in by_path.items():
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
        try:
            os.write(fd, b"".join(chunks))
            os.fsync(fd)
        finally:
            os.close(fd)


@dataclass
class Written:
    """The finaliser's two files (in the partial directory), each None if it has no line."""
    output: Path | None
    output_lines: int
    errors: Path | None
    error_lines: int


def finalise(folder: Path, total: int, bitmap: bytes, winners: dict[int, int], ending: str,
             partial_dir: Path, new_request_id: Callable[[], str]) -> Written:
    """Write the output and error files: for each input line in order, the result of the
    attempt done.lua recorded; a line never done (cancelled, expired) gets a `batch_<ending>`
    error line with its custom_id."""
    chosen = _choose(folder, bitmap, winners)
    tag = secrets.token_hex(6)
    out_path, err_path = partial_dir / f"out-{tag}.part", partial_dir / f"err-{tag}.part"
    counts = [0, 0]
    with open(out_path, "wb") as out, open(err_path, "wb") as err:
        for line in range(total):
            record = chosen.get(line)
            if record is not None:
                error, text = record
                (err if error else out).write(text)
                counts[error] += 1
            else:
                err.write(_not_run(folder, line, ending, new_request_id()))
                counts[1] += 1
        for f in (out, err):
            f.flush()
            os.fsync(f.fileno())
    if not counts[0]:
        out_path.unlink()
    if not counts[1]:
        err_path.unlink()
    return Written(out_path if counts[0] else None, counts[0],
                   err_path if counts[1] else None, counts[1])


def _choose(folder: Path, bitmap: bytes, winners: dict[int, int]) -> dict[int, tuple[int, bytes]]:
    """line -> (is error, output line), for lines marked done: the recorded attempt's record;
    if none has its number (Redis lost recent writes and numbered attempts again), any
    whole record of that line."""
    chosen: dict[int, tuple[int, bytes]] = {}
    exact: set[int] = set()
    for line, attempt, error, text in _records(folder):
        if not _bit(bitmap, line) or line in exact:
            continue
        if attempt == winners.get(line, 1):
            chosen[line] = (error, text)
            exact.add(line)
        elif line not in chosen:
            chosen[line] = (error, text)
    return chosen


def _records(folder: Path) -> Iterator[tuple[int, int, int, bytes]]:
    for path in sorted(folder.glob("spool-*.jsonl")):
        with open(path, "rb") as f:
            for raw in f:
                head, _, text = raw.partition(b"\t")
                try:
                    line, attempt, error = (int(x) for x in head.split())
                    orjson.loads(text)
                except ValueError:
                    continue  # torn by a crash mid-write: its line was never marked done
                yield line, attempt, error, text if text.endswith(b"\n") else text + b"\n"


def _bit(bitmap: bytes, i: int) -> bool:
    byte = i >> 3
    return byte < len(bitmap) and bool(bitmap[byte] & (0x80 >> (i & 7)))


def _not_run(folder: Path, line: int, ending: str, request_id: str) -> bytes:
    offset, length = read_span(folder / "lines.idx", line)
    with open(folder / "input.jsonl", "rb") as f:
        f.seek(offset)
        custom_id = orjson.loads(f.read(length)).get("custom_id")
    why = {"cancelled": "the batch was cancelled before this request ran",
           "expired": "the batch's completion window ended before this request ran"}
    return orjson.dumps({"id": request_id, "custom_id": custom_id, "response": None,
                         "error": {"code": f"batch_{ending}", "message": why.get(ending, ending)}}) + b"\n"
