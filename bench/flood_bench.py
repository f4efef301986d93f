"""Admission under a flood: bursts of 1,000 requests that arrive at once (all connections
opened first, every request written in one loop turn), against the gateway under gunicorn
with its default Redis time limit (REDIS_TIMEOUT_SECS, read from the settings of the llmgw
it imports, so the same script measures an older tree put first on PYTHONPATH) and four
workers.

For each round, in turns: the baseline, a burst whose key is malformed (answered 401 before
any Redis call: the cost of taking 1,000 connections and answering them), then a burst
against an organisation with `rpm_limit` 100 and one with `max_concurrent` 100 (the admitted
ones held 1.5 s). Printed: how many each burst admitted (must be 100), how many were refused
by the limiter being busy or degraded, and the time from the burst's last write to each
refusal's answer (p50 / p99 / max), also as a ratio to the baseline's.

    .venv/bin/python bench/flood_bench.py [--rounds 5] [--workers 4]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]
from burst import Answer, burst, counts  # noqa: E402
from stacks import TestStack  # noqa: E402

from llmgw.settings import Settings  # noqa: E402

N = 1000
LIMIT = 100
LIMITER_CODES = ("limiter_busy", "limiter_unavailable", "state_unavailable")
CHAT = {"model": "qwen", "messages": [{"role": "user", "content": "hello there"}], "max_tokens": 1}


def _pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))] * 1000


def _round(stack: TestStack, key: str) -> list[Answer]:
    return asyncio.run(burst([stack.base_url], "/v1/chat/completions", CHAT,
                             {"Authorization": f"Bearer {key}"}, N))


def _row(answers: list[Answer]) -> dict:
    refused = [a.secs for a in answers if a.status != 200] or [a.secs for a in answers]
    got = counts(answers)
    limiter = sum(n for (_, code), n in got.items() if code in LIMITER_CODES)
    return {"admitted": sum(got.values()) - limiter - got.get((401, "invalid_api_key"), 0)
            - sum(n for (status, _), n in got.items() if status == 429),
            "limiter_refusals": limiter,
            "answers": {f"{status} {code}".strip(): n for (status, code), n in sorted(got.items())},
            "p50_ms": _pct(refused, 0.5), "p99_ms": _pct(refused, 0.99),
            "max_ms": max(refused) * 1000}


def run(rounds: int, workers: int) -> dict:
    timeout = Settings.model_fields["redis_timeout_secs"].default
    stack = TestStack("sim", Path(tempfile.mkdtemp(prefix="flood-bench-")), workers=workers,
                      sim_args=("--ttft-ms", "0", "--itl-ms", "0"),
                      env={"REDIS_TIMEOUT_SECS": str(timeout)}).start()
    rows: dict[str, list[dict]] = {"baseline (401, no Redis)": [], "rpm_limit 100": [],
                                   "max_concurrent 100": []}
    try:
        for _ in range(rounds):
            rows["baseline (401, no Redis)"].append(_row(_round(stack, "sk-malformed")))
            rows["rpm_limit 100"].append(_row(_round(stack, stack.open_org(rpm_limit=LIMIT)
                                                     ["api_key"])))
            stack.chat_faults(ttft_ms=1500)
            try:
                org = stack.open_org(max_concurrent=LIMIT)
                rows["max_concurrent 100"].append(_row(_round(stack, org["api_key"])))
            finally:
                stack.chat_faults()
        degraded = (stack.logs / "gateway.log").read_text().count("limiter degraded")
    finally:
        stack.stop()
    return {"rows": rows, "degraded_lines": degraded, "rounds": rounds, "workers": workers,
            "redis_timeout_secs": timeout}


def report(result: dict) -> str:
    base = statistics.median(r["p50_ms"] for r in result["rows"]["baseline (401, no Redis)"])
    lines = [f"{result['rounds']} rounds, bursts of {N}, {result['workers']} workers, "
             f"REDIS_TIMEOUT_SECS {result['redis_timeout_secs']}; 'limiter degraded' log lines: "
             f"{result['degraded_lines']}",
             "| burst | admitted per round | limiter refusals | refusal p50 ms (median, range) "
             "| p99 ms | max ms | p50 / baseline p50 |", "|---|---|---|---|---|---|---|"]
    for name, rows in result["rows"].items():
        p50s = [r["p50_ms"] for r in rows]
        lines.append(
            f"| {name} | {', '.join(str(r['admitted']) for r in rows)} "
            f"| {sum(r['limiter_refusals'] for r in rows)} "
            f"| {statistics.median(p50s):.1f} ({min(p50s):.1f}-{max(p50s):.1f}) "
            f"| {statistics.median(r['p99_ms'] for r in rows):.1f} "
            f"| {max(r['max_ms'] for r in rows):.1f} | {statistics.median(p50s) / base:.2f} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--workers", type=int, default=4)
    args = parser.parse_args()
    result = run(args.rounds, args.workers)
    text = report(result)
    print(text)
    out = ROOT / "bench" / "results"
    out.mkdir(exist_ok=True)
    (out / "flood.json").write_text(json.dumps(result, indent=2))
    (out / "flood.md").write_text(text)


if __name__ == "__main__":
    main()
