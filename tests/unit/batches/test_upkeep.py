"""The runners' upkeep against a real Redis and real files: a job past its completion window
expires with what ran in the output file and every other line in the error file as
`batch_expired`; finalising twice (a runner outliving its lease) keeps one set of files."""

from __future__ import annotations

import asyncio
import time
from array import array
from pathlib import Path

import orjson
from redis.asyncio import Redis

from llmgw.batches.jobs import JobStore
from llmgw.batches.queue import WorkQueue
from llmgw.batches.spool import Spool, batch_dir
from llmgw.batches.upkeep import Upkeep
from llmgw.batches.validate import write_spans
from llmgw.files.store import FileStore


def _input(folder: Path, n: int) -> None:
    folder.mkdir(parents=True)
    spans, raw = array("Q"), b""
    for i in range(n):
        line = orjson.dumps({"custom_id": f"c{i}", "method": "POST", "url": "/v1/chat/completions",
                             "body": {}}) + b"\n"
        spans.extend((len(raw), len(line)))
        raw += line
    (folder / "input.jsonl").write_bytes(raw)
    write_spans(spans, folder / "lines.idx")


def test_a_job_past_its_window_expires_keeping_what_ran(redis_port, tmp_path):
    async def scenario():
        async with Redis(port=redis_port, decode_responses=True) as redis:
            await redis.flushall()
            FileStore.prepare(tmp_path)
            jobs, queue = JobStore(redis, time.time), WorkQueue(redis, lease_ms=60_000)
            files = FileStore(redis, tmp_path, org_max_bytes=10**9)
            upkeep = Upkeep(redis, jobs, queue, files, None, tmp_path)
            now = int(time.time())
            _input(batch_dir(tmp_path, "org_a", "batch_1"), 3)
            await jobs.create("org_a", "batch_1", {
                "id": "batch_1", "kind": "batch", "status": "in_progress", "created_at": now - 90_000,
                "expires_at": now - 3600, "endpoint": "/v1/chat/completions", "total": 3,
                "model": "m", "input_file_id": "file-x"}, runnable=True)
            claim = await queue.claim()
            await Spool(tmp_path, "r").append("org_a", "batch_1", claim.line, claim.attempt, False,
                                              {"custom_id": "c0", "response": {"status_code": 200}})
            assert await queue.done(claim, "completed", (1, 2, 0, 0)) == 1
            await upkeep.once()   # past its window: no new line starts, it finalises
            await upkeep.once()
            await upkeep.finalise("org_a", "batch_1")  # again: nothing changes
            fields = await jobs.fields("org_a", "batch_1")
            listed = await files.page("org_a", limit=10, descending=False, after=None, purpose=None)
            return fields, listed[0]
    fields, listed = asyncio.run(scenario())
    assert fields["status"] == "expired" and fields["expired_at"]
    assert fields["completed"] == "1" and fields["in_tok"] == "1"
    assert len(listed) == 2 and {f.purpose for f in listed} == {"batch_output"}
    out = (tmp_path / "files" / "org_a" / fields["output_file_id"]).read_bytes().splitlines()
    err = (tmp_path / "files" / "org_a" / fields["error_file_id"]).read_bytes().splitlines()
    assert [orjson.loads(x)["custom_id"] for x in out] == ["c0"]
    assert [(orjson.loads(x)["custom_id"], orjson.loads(x)["error"]["code"]) for x in err] == [
        ("c1", "batch_expired"), ("c2", "batch_expired")]
    assert not batch_dir(tmp_path, "org_a", "batch_1").exists()
