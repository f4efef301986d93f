"""Admissions per second on a Redis Cluster of 1 and of 3 shards, side by side (run by
limiter_bench.py, or alone).

Client processes each run concurrent loops of admit then settle (the limiter's two scripts,
through ClusterChannel) for organisations picked at random among ORGS, so their hash tags
spread over the shards. Printed per topology: admissions per second, Redis CPU per admission
(utime+stime of every shard over the run) and each shard's share of the script calls.
Rounds alternate the topologies; medians with the range in brackets.

Run: .venv/bin/python bench/limiter_shards.py
"""

from __future__ import annotations

import asyncio
import json
import multiprocessing
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

import uvloop

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "gateway"), str(ROOT / "tests"), str(ROOT)]

from llmgw.admission.cluster_channel import ClusterChannel  # noqa: E402
from llmgw.admission.redis_limiter import RedisLimiter, Reservation, counter_sets  # noqa: E402
from llmgw.tenancy.limits import Limits  # noqa: E402
from redis_topology import Cluster, _cli  # noqa: E402

ORGS = 300
CLIENTS = 2       # processes
LOOPS = 32        # concurrent admit-settle loops per process
SECS = 6.0
ROUNDS = 3
LIMITS = Limits(rps=10**5, burst=10**6, rpm_limit=10**7, tpm_limit=10**10, max_concurrent=10**5,
                daily_token_limit=10**12, daily_request_limit=10**9, monthly_token_limit=10**12,
                max_context_tokens=8192, max_output_tokens=512)


async def _client(url: str, secs: float, seed: int) -> int:
    from redis.asyncio.cluster import RedisCluster
    client = RedisCluster.from_url(url)
    channel = ClusterChannel(url, timeout=2.0)
    limiter = RedisLimiter(client, channel, lease_ms=30_000, global_max_concurrent=0,
                           usage_retention_secs=86400, platform_sets=False)
    rng = random.Random(seed)
    orgs = [f"org_{i:016x}" for i in range(ORGS)]
    done = 0
    end = time.monotonic() + secs

    async def loop(n: int) -> None:
        nonlocal done
        i = 0
        while time.monotonic() < end:
            org = rng.choice(orgs)
            scopes = counter_sets(org, LIMITS, "k", Limits())
            rid = f"{seed}-{n}-{i}"
            v = await limiter.admit(rid, scopes, 100, 0)
            res = Reservation(rid, org, scopes, 100, v.day, v.month, "llmgw:usage:{" + org + "}:",
                              global_key=v.lease_set)
            await limiter.settle(res, 50, {"k|m|chat|requests": 1})
            done += 1
            i += 1
    await asyncio.gather(*(loop(n) for n in range(LOOPS)))
    await channel.aclose()
    await client.aclose()
    return done


def _process(url: str, secs: float, seed: int, out: multiprocessing.Queue) -> None:
    out.put(uvloop.run(_client(url, secs, seed)))


def _cpu_secs(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _evalsha_calls(port: int) -> int:
    for line in _cli(port, "info", "commandstats").splitlines():
        if line.startswith("cmdstat_evalsha:"):
            return int(line.split("calls=")[1].split(",")[0])
    return 0


def measure(shards: int) -> dict:
    with tempfile.TemporaryDirectory() as root:
        cluster = Cluster(Path(root), shards=shards)
        try:
            uvloop.run(_client(cluster.url, 0.5, 0))  # warm: the scripts loaded everywhere
            pids = [cluster.procs[p].pid for p in cluster.ports]
            cpu0 = [_cpu_secs(p) for p in pids]
            calls0 = [_evalsha_calls(p) for p in cluster.ports]
            out: multiprocessing.Queue = multiprocessing.Queue()
            procs = [multiprocessing.Process(target=_process, args=(cluster.url, SECS, s + 1, out))
                     for s in range(CLIENTS)]
            start = time.monotonic()
            for p in procs:
                p.start()
            admitted = sum(out.get(timeout=SECS + 60) for _ in procs)
            wall = time.monotonic() - start
            for p in procs:
                p.join()
            cpu = sum(_cpu_secs(p) for p in pids) - sum(cpu0)
            calls = [_evalsha_calls(p) - c for p, c in zip(cluster.ports, calls0)]
        finally:
            cluster.stop()
    return {"admissions_per_sec": admitted / wall, "redis_cpu_us_per_admission": cpu / admitted * 1e6,
            "shard_shares": [round(c / max(1, sum(calls)), 3) for c in calls]}


def run() -> dict:
    rounds: dict[int, list[dict]] = {1: [], 3: []}
    for _ in range(ROUNDS):
        for shards in (1, 3):
            rounds[shards].append(measure(shards))
    summary = {}
    for shards, runs in rounds.items():
        rates = [r["admissions_per_sec"] for r in runs]
        cpus = [r["redis_cpu_us_per_admission"] for r in runs]
        summary[f"{shards} shard{'s' if shards > 1 else ''}"] = {
            "admissions_per_sec": round(statistics.median(rates)),
            "range": [round(min(rates)), round(max(rates))],
            "redis_cpu_us_per_admission": round(statistics.median(cpus), 1),
            "shard_shares": runs[-1]["shard_shares"]}
    base = summary["1 shard"]["admissions_per_sec"]
    for shards, row in zip((1, 3), summary.values()):
        row["vs_1_shard"] = round(row["admissions_per_sec"] / base, 2)
        # What the shards could admit with a core each and clients elsewhere: one core's
        # worth of script time per shard, as measured here.
        row["ceiling_per_sec"] = round(shards * 1e6 / row["redis_cpu_us_per_admission"])
    return summary


def report(summary: dict) -> list[str]:
    lines = ["| topology | admissions/s (median, range) | vs 1 shard | Redis CPU µs per "
             "admission | share of script calls per shard | ceiling, a core per shard |",
             "|---|---|---|---|---|---|"]
    for name, row in summary.items():
        lines.append(f"| {name} | {row['admissions_per_sec']} ({row['range'][0]}-"
                     f"{row['range'][1]}) | {row['vs_1_shard']} | "
                     f"{row['redis_cpu_us_per_admission']} | {row['shard_shares']} | "
                     f"{row['ceiling_per_sec']}/s |")
    return lines


def main() -> None:
    result = run()
    head = (f"Redis Cluster, {os.cpu_count()} cores shared by the shards and {CLIENTS} client "
            f"processes x {LOOPS} loops of admit + settle; {ORGS} organisations; {ROUNDS} rounds "
            f"of {SECS:.0f} s")
    lines = report(result)
    print(head + "\n" + "\n".join(lines))
    out = ROOT / "bench" / "results"
    (out / "limiter_shards.json").write_text(json.dumps(result, indent=2))
    (out / "limiter_shards.md").write_text(head + "\n\n" + "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
