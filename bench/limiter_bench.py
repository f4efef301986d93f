"""The limiter's cost per request: p50/p99 of the admission and settlement steps against a real
redis-server, with a plain PING round trip measured in the same run as the baseline.

Run: .venv/bin/python bench/limiter_bench.py   (make bench runs it too)
"""

from __future__ import annotations

import asyncio
import json
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import uvloop
from redis.asyncio import Redis

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "gateway"), str(ROOT / "bench")]

from llmgw.admission.redis_channel import RedisChannel  # noqa: E402
from llmgw.admission.redis_limiter import RedisLimiter, Reservation, counter_sets  # noqa: E402
from llmgw.tenancy.limits import Limits  # noqa: E402
import limiter_shards  # noqa: E402

N = 5000
LIMITS = Limits(rps=10**5, burst=10**6, rpm_limit=10**7, tpm_limit=10**10, max_concurrent=10**5,
                daily_token_limit=10**12, daily_request_limit=10**9, monthly_token_limit=10**12,
                max_context_tokens=8192, max_output_tokens=512)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _pct(samples: list[float], q: float) -> float:
    return sorted(samples)[min(len(samples) - 1, int(q * len(samples)))] * 1e6


async def _timed(op, n: int) -> list[float]:
    """Wall time of each call; the CPU per call of the whole run is appended last."""
    out = []
    cpu = time.process_time()
    for i in range(n):
        t = time.perf_counter()
        await op(i)
        out.append(time.perf_counter() - t)
    return out + [(time.process_time() - cpu) / n]


async def run(port: int) -> dict:
    r = Redis(port=port)
    channel = RedisChannel(f"redis://127.0.0.1:{port}/0", timeout=1.0)
    limiter = RedisLimiter(r, channel, lease_ms=30000, global_max_concurrent=10**6,
                           usage_retention_secs=86400)
    scopes = counter_sets("org_bench", LIMITS, "k", Limits())
    key_scopes = counter_sets("org_bench2", LIMITS, "k", Limits(rpm_limit=10**7))
    await limiter.admit("warm", scopes, 10, 0)
    ping = await _timed(lambda i: channel.send(("PING",)), N)
    redis_py_ping = await _timed(lambda i: r.ping(), N)
    verdicts = {}

    async def admit(i):
        verdicts[i] = await limiter.admit(f"r{i}", scopes, 300, 0)

    admit_s = await _timed(admit, N)

    async def settle(i):
        v = verdicts[i]
        await limiter.settle(Reservation(f"r{i}", "org_bench", scopes, 300, v.day, v.month,
                                         "llmgw:usage:{org_bench}:"), 120, {"k|m|chat|requests": 1})

    settle_s = await _timed(settle, N)
    key_s = await _timed(lambda i: limiter.admit(f"q{i}", key_scopes, 300, 0), N)
    await r.aclose()
    await channel.aclose()
    rows = {"ping (baseline)": ping, "ping through redis-py": redis_py_ping, "admit (org scope)": admit_s, "admit (org + key scopes)": key_s,
            "settle": settle_s}
    base = statistics.median(ping[:-1])
    return {name: {"p50_us": round(_pct(s[:-1], 0.5), 1), "p99_us": round(_pct(s[:-1], 0.99), 1),
                   "p50_vs_ping": round(statistics.median(s[:-1]) / base, 2),
                   "cpu_us": round(s[-1] * 1e6, 1)} for name, s in rows.items()}


def main() -> None:
    port = _free_port()
    with tempfile.TemporaryDirectory() as data:
        server = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1",
                                   "--save", "", "--appendonly", "yes", "--dir", data],
                                  stdout=subprocess.DEVNULL)
        try:
            time.sleep(0.5)
            results = uvloop.run(run(port))  # the gateway's event loop
        finally:
            server.terminate()
            server.wait()
    print(f"limiter cost, {N} sequential calls each, loopback redis-server with AOF:")
    print(f"{'step':28} {'p50 us':>8} {'p99 us':>8} {'p50 / ping':>10} {'CPU us':>8}")
    for name, row in results.items():
        print(f"{name:28} {row['p50_us']:>8} {row['p99_us']:>8} {row['p50_vs_ping']:>10} "
              f"{row['cpu_us']:>8}")
    out = ROOT / "bench" / "results"
    out.mkdir(exist_ok=True)
    (out / "limiter.json").write_text(json.dumps(results, indent=2))
    lines = ["| step | p50 µs | p99 µs | p50 / ping | CPU µs per call (client) |", "|---|---|---|---|---|"]
    lines += [f"| {n} | {r['p50_us']} | {r['p99_us']} | {r['p50_vs_ping']} | {r['cpu_us']} |"
              for n, r in results.items()]
    (out / "limiter.md").write_text("\n".join(lines) + "\n")
    print()
    limiter_shards.main()  # admissions per second, 1 and 3 cluster shards side by side


if __name__ == "__main__":
    main()
