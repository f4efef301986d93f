"""The spool and the finaliser on real files: group-committed appends, the recorded attempt
chosen over a stale one, a torn last line ignored, lines never run written as errors with
their custom_id, each input line exactly once."""

from __future__ import annotations

import asyncio
import itertools
from array import array

import orjson

from llmgw.batches.spool import Spool, batch_dir, finalise
from llmgw.batches.validate import write_spans


def _input(folder, n):
    folder.mkdir(parents=True)
    spans, offset, raw = array("Q"), 0, b""
    for i in range(n):
        line = orjson.dumps({"custom_id": f"c{i}", "method": "POST", "url": "/v1/x",
                             "body": {}}) + b"\n"
        spans.extend((offset, len(line)))
        offset += len(line)
        raw += line
    (folder / "input.jsonl").write_bytes(raw)
    write_spans(spans, folder / "lines.idx")


def _bitmap(done):
    out = bytearray(2)
    for i in done:
        out[i >> 3] |= 0x80 >> (i & 7)
    return bytes(out)


def test_finalise_takes_the_recorded_attempt_once_per_line(tmp_path):
    folder = batch_dir(tmp_path, "org_a", "batch_1")
    _input(folder, 5)
    spool = Spool(tmp_path, "r1")

    async def write():
        await asyncio.gather(*(spool.append("org_a", "batch_1", i, 1, i == 3,
                                            {"custom_id": f"c{i}", "n": 1}) for i in range(4)))
        await spool.append("org_a", "batch_1", 1, 2, False, {"custom_id": "c1", "n": 2})
    asyncio.run(write())
    with open(spool.path("org_a", "batch_1"), "ab") as f:
        f.write(b'2 3 0\t{"custom_id": "c2", "tor')  # a crash mid-write
    ids = itertools.count()
    written = finalise(folder, 5, _bitmap([0, 1, 2, 3]), {1: 2}, "cancelled", tmp_path,
                       lambda: f"req{next(ids)}")
    out = [orjson.loads(x) for x in written.output.read_bytes().splitlines()]
    err = [orjson.loads(x) for x in written.errors.read_bytes().splitlines()]
    assert [(x["custom_id"], x["n"]) for x in out] == [("c0", 1), ("c1", 2), ("c2", 1)]
    assert err[0] == {"custom_id": "c3", "n": 1}
    assert err[1]["custom_id"] == "c4" and err[1]["response"] is None
    assert err[1]["error"]["code"] == "batch_cancelled"
    assert (written.output_lines, written.error_lines) == (3, 2)


def test_finalise_without_errors_writes_no_error_file(tmp_path):
    folder = batch_dir(tmp_path, "org_a", "batch_1")
    _input(folder, 1)
    asyncio.run(Spool(tmp_path, "r").append("org_a", "batch_1", 0, 1, False, {"custom_id": "c0"}))
    written = finalise(folder, 1, _bitmap([0]), {}, "completed", tmp_path, lambda: "x")
    assert written.errors is None and written.output_lines == 1
    assert list(tmp_path.glob("err-*")) == []
