"""Batch work on spare capacity, measured (issue 20): does a queued 5,000-line batch slow the
realtime users, and how much of the room they leave does it use?

Two simulated chat replicas with 32 sequence slots each (64 in all) behind the real gateway
(gunicorn, 2 workers), Redis and one batch runner sending its lines through the gateway
instance of its own (1 worker), as compose deploys them; --shared-gateway sends them through
the realtime instance instead (the control: what that instance's own isolation is worth). Realtime: streamed chat requests arriving
by a Poisson process at --load (default 0.5) of the slots: rate = load x 64 / the time one
request holds a slot. Phases alternate, --rounds times: realtime alone, then realtime with a
new 5,000-line batch queued (cancelled at the phase's end). Per phase, after --warmup s:
realtime TTFT (first content event) p50 and p99, and, sampled every 100 ms from the
simulators, the slots batch lines hold against the slots realtime leaves free
(64 - realtime requests in flight). Figures are medians over rounds, with their range; the
checks are the issue's: TTFT p50 and p99 with batch at most 1.10x alone, batch using at least
70 % of the free slots. Results: bench/results/batch.{json,md}. Loopback only; about 6 min.

    PYTHONPATH=gateway:simulator .venv/bin/python bench/batch_bench.py [--rounds 3]
        [--phase 45] [--warmup 8] [--load 0.5] [--gateway-env BATCH_CAPACITY_SHARE=0.9]
        [--shared-gateway] [--sim-seqs 128]
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx
import orjson

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]
from stacks import OPEN_LIMITS, TestStack  # noqa: E402
sys.path.insert(0, str(ROOT / "bench"))
import proc_cpu  # noqa: E402

ROUTING = Path(__file__).resolve().parent / "batch_bench.yaml"
SLOTS, TTFT_MS, ITL_MS, TOKENS = 64, 50, 100, 16
HOLD_S = (TTFT_MS + (TOKENS - 1) * ITL_MS) / 1000  # how long one request holds a slot
BATCH_LINES = 5000


class Realtime:
    """Open-loop streamed chat: TTFT per request, and how many are in flight."""

    def __init__(self, url: str, key: str) -> None:
        self.url, self.key = url + "/v1/chat/completions", key
        self.client = httpx.AsyncClient(limits=httpx.Limits(max_connections=1000),
                                        timeout=httpx.Timeout(120.0))
        self.in_flight = 0
        self.samples: list[tuple[float, float | None, int]] = []  # (sent, ttft, status)

    async def run(self, rate: float, seconds: float, rng: random.Random) -> None:
        t0, due, tasks = time.perf_counter(), 0.0, []
        while (due := due + rng.expovariate(rate)) < seconds:
            await asyncio.sleep(max(0.0, t0 + due - time.perf_counter()))
            tasks.append(asyncio.create_task(self.one()))
        await asyncio.gather(*tasks)

    async def one(self) -> None:
        body = {"model": "qwen", "messages": [{"role": "user", "content": "hello there"}],
                "max_tokens": TOKENS, "stream": True}
        sent, ttft, status = time.perf_counter(), None, 0
        self.in_flight += 1
        try:
            async with self.client.stream("POST", self.url, json=body,
                                          headers={"Authorization": f"Bearer {self.key}"}) as resp:
                status = resp.status_code
                async for line in resp.aiter_lines():
                    if ttft is None and line.startswith("data: {") and '"content":"' in line:
                        ttft = time.perf_counter() - sent
        except httpx.HTTPError:
            status = -1
        finally:
            self.in_flight -= 1
        self.samples.append((sent, ttft, status))


async def sample_slots(stack: TestStack, realtime: Realtime, stop: asyncio.Event,
                       out: list[tuple[float, int, int, int, int]]) -> None:
    """(time, slots running on the simulators, realtime requests in flight, requests waiting
    on the simulators, requests they aborted so far) every 100 ms."""
    urls = [stack.backend_url(n) + "/sim/stats" for n in ("chat0", "chat1")]
    async with httpx.AsyncClient(timeout=5) as client:
        while not stop.is_set():
            stats = [s.json() for s in await asyncio.gather(*(client.get(u) for u in urls))]
            out.append((time.perf_counter(), sum(s["running"] for s in stats), realtime.in_flight,
                        sum(s["waiting"] for s in stats), sum(s["aborted"] for s in stats)))
            await asyncio.sleep(0.1)


def _batch_file(n: int) -> bytes:
    return b"".join(orjson.dumps({
        "custom_id": f"b{i}", "method": "POST", "url": "/v1/chat/completions",
        "body": {"model": "qwen", "messages": [{"role": "user", "content": f"summarise {i}"}],
                 "max_tokens": TOKENS}}) + b"\n" for i in range(n))


async def phase(stack: TestStack, key: str, batch_key: str | None, args, seed: int) -> dict:
    realtime = Realtime(stack.base_url, key)
    auth = {"Authorization": f"Bearer {batch_key}"}
    batch_id = None
    async with httpx.AsyncClient(base_url=stack.base_url, headers=auth, timeout=60) as api:
        if batch_key:
            up = await api.post("/v1/files", files={"file": ("b.jsonl", io.BytesIO(_batch_file(BATCH_LINES)))},
                                data={"purpose": "batch"})
            created = await api.post("/v1/batches", json={
                "input_file_id": up.json()["id"], "endpoint": "/v1/chat/completions",
                "completion_window": "24h"})
            batch_id = created.json()["id"]
        stop, slots = asyncio.Event(), []
        sampler = asyncio.create_task(sample_slots(stack, realtime, stop, slots))
        started = time.perf_counter()
        cpu0 = proc_cpu.reading()
        await realtime.run(args.load * SLOTS / HOLD_S, args.phase, random.Random(seed))
        stop.set()
        await sampler
        cpu = proc_cpu.rate(cpu0, proc_cpu.reading(), time.perf_counter() - started)
        done = None
        if batch_id:
            batch = (await api.get(f"/v1/batches/{batch_id}")).json()
            done = batch["request_counts"]["completed"]
            await api.post(f"/v1/batches/{batch_id}/cancel")
            while (await api.get(f"/v1/batches/{batch_id}")).json()["status"] != "cancelled":
                await asyncio.sleep(0.5)
    await realtime.client.aclose()
    return {**_figures(realtime.samples, slots, started + args.warmup, done, args.phase),
            "cores": cpu}


def _figures(samples, slots, after: float, batch_done, seconds: float) -> dict:
    ttfts = sorted(t for sent, t, status in samples if sent >= after and status == 200 and t)
    errors = sum(1 for sent, _, status in samples if sent >= after and status != 200)
    kept = [(running, rt) for when, running, rt, _, _ in slots if when >= after]
    waiting = [w for when, _, _, w, _ in slots if when >= after]
    aborted = [a for when, _, _, _, a in slots if when >= after]
    batch = statistics.fmean(max(0, running - rt) for running, rt in kept)
    free = statistics.fmean(max(0, SLOTS - rt) for _, rt in kept)
    return {"requests": len(ttfts), "errors": errors,
            "ttft_p50_ms": 1000 * ttfts[len(ttfts) // 2],
            "ttft_p99_ms": 1000 * ttfts[min(len(ttfts) - 1, int(len(ttfts) * 0.99))],
            "realtime_slots": statistics.fmean(rt for _, rt in kept),
            "batch_slots": batch, "free_slots": free, "batch_share_of_free": batch / free,
            "batch_lines_per_s": None if batch_done is None else batch_done / seconds,
            # the work batch finished, in slots: lines/s x the time a line holds a slot
            "batch_useful_share_of_free": None if batch_done is None
            else batch_done / seconds * HOLD_S / free,
            "samples_with_waiting": sum(1 for w in waiting if w) / len(waiting),
            "aborted": aborted[-1] - aborted[0]}


def _median(rows: list[dict], field: str) -> dict:
    values = [r[field] for r in rows if r[field] is not None]
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


async def run(args) -> dict:
    env = {"MAX_CONCURRENT_BATCH": "64", "BATCH_RUNNER_SLOTS": "64",
           **dict(kv.split("=", 1) for kv in args.gateway_env)}
    stack = TestStack("sim", Path(tempfile.mkdtemp(prefix="batch-bench-")), workers=2,
                      runners=1, batch_gateway=not args.shared_gateway, routing=ROUTING, env=env,
                      sim_args=("--ttft-ms", str(TTFT_MS), "--itl-ms", str(ITL_MS),
                                "--max-num-seqs", str(args.sim_seqs), "--output-len-min", str(TOKENS),
                                "--output-len-max", str(TOKENS))).start()
    try:
        key = stack.create_org(**{**OPEN_LIMITS, "max_output_tokens": 64})["api_key"]
        batch_key = stack.create_org(**{**OPEN_LIMITS, "max_output_tokens": 64},
                                     key={"name": "b", "scopes": ["batch"]})["api_key"]
        alone, mixed = [], []
        for r in range(args.rounds):
            alone.append(await phase(stack, key, None, args, seed=r))
            mixed.append(await phase(stack, key, batch_key, args, seed=r))
            print(f"round {r + 1}: alone {alone[-1]}\n         batch {mixed[-1]}", flush=True)
    finally:
        stack.stop()
    config = {**vars(args), "out": str(Path(args.out).resolve().relative_to(ROOT))
              if Path(args.out).resolve().is_relative_to(ROOT) else Path(args.out).name}
    return {"config": {**config, "slots": SLOTS, "hold_s": HOLD_S, "batch_lines": BATCH_LINES,
                       "env": env}, "alone": alone, "with_batch": mixed,
            "summary": _summary(alone, mixed)}


def _summary(alone: list[dict], mixed: list[dict]) -> dict:
    ratios = {f: [m[f] / a[f] for a, m in zip(alone, mixed)] for f in ("ttft_p50_ms", "ttft_p99_ms")}
    summary = {f"{f}_ratio": {"median": statistics.median(v), "min": min(v), "max": max(v)}
               for f, v in ratios.items()}
    for field in ("ttft_p50_ms", "ttft_p99_ms", "realtime_slots"):
        summary[f"alone_{field}"] = _median(alone, field)
        summary[f"batch_{field}"] = _median(mixed, field)
    summary["batch_share_of_free"] = _median(mixed, "batch_share_of_free")
    summary["batch_lines_per_s"] = _median(mixed, "batch_lines_per_s")
    summary["batch_useful_share_of_free"] = _median(mixed, "batch_useful_share_of_free")
    summary["cores"] = {phase: {group: statistics.median(r["cores"].get(group, 0.0) for r in rows)
                                for group in sorted({g for r in rows for g in r["cores"]})}
                        for phase, rows in (("alone", alone), ("with_batch", mixed))}
    summary["checks"] = {
        "ttft_p50_within_10pct": summary["ttft_p50_ms_ratio"]["median"] <= 1.10,
        "ttft_p99_within_10pct": summary["ttft_p99_ms_ratio"]["median"] <= 1.10,
        "batch_uses_70pct_of_free": summary["batch_share_of_free"]["median"] >= 0.70}
    return summary


def markdown(result: dict) -> str:
    s, c = result["summary"], result["config"]
    through = "the realtime gateway instance" if c["shared_gateway"] else "their own gateway instance"
    seqs = "" if c["sim_seqs"] == 32 else f"; the simulators really have {c['sim_seqs']} slots each"
    rng = lambda d, f="{:.1f}": f"{f.format(d['median'])} ({f.format(d['min'])}-{f.format(d['max'])})"  # noqa: E731
    return "\n".join([
        "# Batch on spare capacity (bench/batch_bench.py)", "",
        f"Two simulated replicas x 32 slots; realtime streamed chat at {c['load']:.0%} of the "
        f"slots (Poisson), {c['rounds']} rounds of {c['phase']:.0f} s phases, alone then with a "
        f"{c['batch_lines']}-line batch queued; medians (range). Settings: {c['env']}. "
        f"Batch lines through {through}{seqs}.", "",
        "| | realtime alone | realtime + batch | ratio |", "|---|---|---|---|",
        f"| TTFT p50 (ms) | {rng(s['alone_ttft_p50_ms'])} | {rng(s['batch_ttft_p50_ms'])} | "
        f"{rng(s['ttft_p50_ms_ratio'], '{:.3f}')} |",
        f"| TTFT p99 (ms) | {rng(s['alone_ttft_p99_ms'])} | {rng(s['batch_ttft_p99_ms'])} | "
        f"{rng(s['ttft_p99_ms_ratio'], '{:.3f}')} |",
        f"| realtime slots held | {rng(s['alone_realtime_slots'])} | "
        f"{rng(s['batch_realtime_slots'])} | |", "",
        f"Batch used {rng(s['batch_share_of_free'], '{:.2f}')} of the slots realtime left free, "
        f"{rng(s['batch_lines_per_s'])} lines/s; the lines it finished (not preempted) filled "
        f"{rng(s['batch_useful_share_of_free'], '{:.2f}')} of them.", "",
        "CPU, in cores (medians): " + "; ".join(
            f"{group} {s['cores']['alone'].get(group, 0):.2f} alone, "
            f"{s['cores']['with_batch'].get(group, 0):.2f} with batch"
            for group in s["cores"]["with_batch"]) + ".", "",
        "Checks: " + ", ".join(f"{k} {'PASS' if v else 'FAIL'}" for k, v in s["checks"].items()),
        ""])


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--phase", type=float, default=45.0)
    p.add_argument("--warmup", type=float, default=8.0)
    p.add_argument("--load", type=float, default=0.5)
    p.add_argument("--gateway-env", action="append", default=[], metavar="NAME=VALUE")
    p.add_argument("--sim-seqs", type=int, default=32,
                   help="the simulators' real slots (a control: more than the gateway is told "
                        "means realtime never waits for one, so what remains is CPU)")
    p.add_argument("--shared-gateway", action="store_true",
                   help="batch lines through the gateway instance realtime requests use")
    p.add_argument("--out", default=str(ROOT / "bench" / "results" / "batch"))
    args = p.parse_args()
    result = asyncio.run(run(args))
    Path(args.out + ".json").write_text(json.dumps(result, indent=2))
    Path(args.out + ".md").write_text(markdown(result))
    print(markdown(result))


if __name__ == "__main__":
    main()
