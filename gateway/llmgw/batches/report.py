"""Batch work in Prometheus' text format, read from Redis when /metrics is scraped: the state
is the platform's (every runner's, every job's), not one worker's, so it is counted where it
lives rather than by each process."""

from __future__ import annotations

import time
from collections import defaultdict

from redis.asyncio import Redis

from ..keyspace import BATCH_CONCURRENCY
from .jobs import JobStore

STATES = ("queued", "running", "completed", "failed")


async def exposition(jobs: JobStore, redis: Redis, *, capacity: int, tenant_labels: bool) -> bytes:
    """Lines of open jobs by organisation and state, open jobs by status, runners alive, and the
    share of the backends' sequence slots (sum of max_num_seqs) batch lines hold now."""
    open_jobs = await jobs.open_jobs()
    lines_by: dict[tuple[str, str], int] = defaultdict(int)
    status_by: dict[str, int] = defaultdict(int)
    for org, batch in open_jobs:
        counts = batch.request_counts
        org = org if tenant_labels else "-"
        running = batch.running
        lines_by[(org, "queued")] += max(0, counts.total - counts.completed - counts.failed - running)
        lines_by[(org, "running")] += running
        lines_by[(org, "completed")] += counts.completed
        lines_by[(org, "failed")] += counts.failed
        status_by[batch.status] += 1
    now_ms = int(time.time() * 1000)
    in_flight = await redis.zcount(BATCH_CONCURRENCY, now_ms, "+inf")
    runners = len(await jobs.runners(time.time()))
    out = ["# HELP llmgw_batch_requests Lines of unfinished batch jobs, by state",
           "# TYPE llmgw_batch_requests gauge"]
    org_label = (lambda org: f'org="{org}",') if tenant_labels else (lambda org: "")
    for (org, state), n in sorted(lines_by.items()):
        out.append(f'llmgw_batch_requests{{{org_label(org)}state="{state}"}} {n}')
    out += ["# HELP llmgw_batch_jobs Unfinished batch jobs, by status",
            "# TYPE llmgw_batch_jobs gauge"]
    out += [f'llmgw_batch_jobs{{status="{s}"}} {n}' for s, n in sorted(status_by.items())]
    out += ["# HELP llmgw_batch_runners Batch runners with a recent heartbeat",
            "# TYPE llmgw_batch_runners gauge", f"llmgw_batch_runners {runners}",
            "# HELP llmgw_batch_in_flight Batch lines running on the backends now",
            "# TYPE llmgw_batch_in_flight gauge", f"llmgw_batch_in_flight {in_flight}",
            "# HELP llmgw_batch_capacity_share Share of the backends' sequence slots batch holds",
            "# TYPE llmgw_batch_capacity_share gauge",
            f"llmgw_batch_capacity_share {in_flight / capacity if capacity else 0:.4f}"]
    return ("\n".join(out) + "\n").encode()
