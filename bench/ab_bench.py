"""The gateway before and after a change, side by side in one process tree.

One Redis and the simulators of the end-to-end routing file serve two gateways: `base` (a git
revision, checked out as a temporary worktree) and `head` (this checkout, or another
revision). Each gateway runs one worker pinned to core 0; wrk runs on the other core. Rounds
alternate base and head, so a noisy moment of a shared machine falls on both; each figure is
the median over the rounds, with its range, and the head/base ratio of the medians.

Figures per case (streaming or not, concurrency): requests/s, wrk's p50 latency, and the
gateway's CPU per request (utime + stime of its processes from /proc over the round, divided by
the requests served). Same chat body as gateway_bench.py.

    .venv/bin/python bench/ab_bench.py --base 11336b3 [--head REV] [--rounds 5] [--duration 4]
        [--concurrency 1 64] [--chat-policy prefix] [--base-policy least_load]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests"), str(ROOT / "bench")]
from gateway_bench import OPEN, _cpu_secs, _wrk, chat_routing  # noqa: E402
from stack.processes import Proc, gateway_env, start_redis, stop, wait_healthy  # noqa: E402
from stacks import TestStack, free_port  # noqa: E402

GATEWAY_CORE, LOAD_CORE = "0", "1"
BODY = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 16}


def checkout(rev: str, tmp: Path) -> Path:
    """`rev` as a detached worktree (this checkout itself for "HEAD" with local changes)."""
    tree = tmp / f"tree-{rev[:12]}"
    subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "-q", "--detach", str(tree), rev],
                   check=True)
    return tree


def start_gateway(tree: Path, stack: TestStack, routing: Path, label: str) -> tuple[Proc, int]:
    """The tree's gateway under gunicorn, one worker, pinned to the gateway core."""
    port = free_port()
    metrics = stack.cfg.state_dir / f"metrics-{label}"
    metrics.mkdir()
    env = {**os.environ, **stack.cfg.env, **gateway_env(stack.specs),
           "PYTHONPATH": f"{tree}/gateway", "ROUTING_FILE": str(routing),
           "GATEWAY_HOST": "127.0.0.1", "GATEWAY_PORT": str(port), "GATEWAY_WORKERS": "1",
           "PROMETHEUS_MULTIPROC_DIR": str(metrics), "REDIS_URL": stack.redis_url}
    gunicorn = str(Path(sys.executable).with_name("gunicorn"))
    log = (stack.logs / f"gateway-{label}.log").open("ab")
    popen = subprocess.Popen(["taskset", "-c", GATEWAY_CORE, gunicorn, "-c",
                              str(tree / "gateway" / "gunicorn.conf.py"), "llmgw.app:create_app()"],
                             env=env, stdout=log, stderr=log, start_new_session=True)
    return Proc(label, popen, f"http://127.0.0.1:{port}/healthz"), port


def pids_of(proc: Proc) -> list[int]:
    kids = subprocess.run(["pgrep", "-P", str(proc.popen.pid)], capture_output=True,
                          text=True).stdout.split()
    return [proc.popen.pid, *map(int, kids)]


def one_round(port: int, pids: list[int], key: str, body: dict, conns: int, secs: int,
              tmp: Path) -> dict:
    cpu0 = _cpu_secs(pids)
    run = _wrk(f"http://127.0.0.1:{port}/v1/chat/completions", key, body, conns, secs, tmp)
    cpu = _cpu_secs(pids) - cpu0
    if run["non_2xx"]:
        raise SystemExit(f"{run['non_2xx']} answers were not 2xx on port {port}")
    return {"rps": run["rps"], "p50_ms": run["p50_ms"],
            "cpu_ms": cpu / max(1, run["requests"]) * 1000}


def summary(runs: list[dict]) -> dict:
    return {k: (statistics.median(r[k] for r in runs), min(r[k] for r in runs),
                max(r[k] for r in runs)) for k in runs[0]}


def compare(args: argparse.Namespace) -> list[dict]:
    tmp = Path(tempfile.mkdtemp(prefix="llmgw-ab-"))
    trees = {"base": checkout(args.base, tmp),
             "head": checkout(args.head, tmp) if args.head else ROOT}
    routings = {}
    for label, policy in (("base", args.base_policy), ("head", args.chat_policy)):
        (tmp / label).mkdir()
        own = trees[label] / "tests" / "e2e" / "routing.yaml"  # what that revision can read
        routings[label] = chat_routing(tmp / label, policy) if policy else own
    stack = TestStack("sim", tmp, workers=1, sim_args=("--ttft-ms", "0", "--itl-ms", "0",
                                                       "--max-num-seqs", "5000"),
                      env={"GLOBAL_MAX_CONCURRENT": "0", "REDIS_TIMEOUT_SECS": "0.5"})
    gateways: dict[str, tuple[Proc, int]] = {}
    try:
        stack.start_backends()
        stack.redis = start_redis(stack.cfg)
        wait_healthy([*stack.backends, stack.redis], 60, stack.logs)
        for label in ("base", "head"):
            gateways[label] = start_gateway(trees[label], stack, routings[label], label)
        wait_healthy([p for p, _ in gateways.values()], 60, stack.logs)
        key = httpx.post(f"http://127.0.0.1:{gateways['head'][1]}/admin/orgs",
                         json={"name": "ab-bench", **OPEN}, timeout=30,
                         headers={"Authorization": f"Bearer {stack.admin_token}"}).json()["api_key"]
        rows = []
        for stream in args.stream:
            for conns in args.concurrency:
                body = {**BODY, "model": "qwen", "stream": stream}
                runs: dict[str, list[dict]] = {"base": [], "head": []}
                for label in ("base", "head"):  # warm-up: connections, caches, JIT-free warm paths
                    one_round(gateways[label][1], pids_of(gateways[label][0]), key, body, conns, 1, tmp)
                for i in range(args.rounds):
                    order = ("base", "head") if i % 2 == 0 else ("head", "base")
                    for label in order:
                        proc, port = gateways[label]
                        runs[label].append(one_round(port, pids_of(proc), key, body, conns,
                                                     args.duration, tmp))
                rows.append({"stream": stream, "concurrency": conns,
                             **{label: summary(r) for label, r in runs.items()}})
                print(render_row(rows[-1]), flush=True)
        return rows
    finally:
        stop([p.popen.pid for p, _ in gateways.values()], grace=10)
        stack.stop()
        for label, tree in trees.items():
            if tree != ROOT:
                subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(tree)])
        shutil.rmtree(tmp, ignore_errors=True)


def render_row(row: dict) -> str:
    cells = []
    for k, unit in (("cpu_ms", "ms CPU/req"), ("p50_ms", "ms p50"), ("rps", "req/s")):
        base, head = row["base"][k], row["head"][k]
        cells.append(f"{unit}: base {base[0]:.3f} [{base[1]:.3f}-{base[2]:.3f}] "
                     f"head {head[0]:.3f} [{head[1]:.3f}-{head[2]:.3f}] "
                     f"ratio {head[0] / base[0]:.3f}")
    kind = "stream" if row["stream"] else "plain"
    return f"{kind:6} c{row['concurrency']:<3} | " + " | ".join(cells)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--base", required=True, help="git revision to compare against")
    parser.add_argument("--head", help="git revision (default: this checkout as it is)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--duration", type=int, default=4)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 64])
    parser.add_argument("--stream", type=lambda s: s == "true", nargs="+", default=[False, True],
                        help="true/false: which cases (default both)")
    parser.add_argument("--chat-policy", choices=["least_load", "prefix", "session", "random"],
                        help="head's chat pool policy (default: the e2e routing file's)")
    parser.add_argument("--base-policy", choices=["least_load", "prefix", "session", "random"],
                        help="base's chat pool policy (default: the e2e routing file's)")
    args = parser.parse_args()
    os.sched_setaffinity(0, {int(LOAD_CORE)})  # wrk, simulators and Redis; gateways: taskset
    rows = compare(args)
    head = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", args.head or "HEAD"],
                          capture_output=True, text=True).stdout.strip()
    meta = {"base": args.base, "head": head + ("" if args.head else " (+ working tree)"),
            "rounds": args.rounds, "seconds_per_round": args.duration,
            "chat_policy": {"base": args.base_policy, "head": args.chat_policy}}
    out = ROOT / "bench" / "results"
    out.mkdir(exist_ok=True)
    (out / "ab.json").write_text(json.dumps({**meta, "rows": rows}, indent=2))
    lines = [f"# Gateway A/B: {meta['head']} against {args.base}", "",
             f"{args.rounds} rounds of {args.duration} s in turns; medians [min-max]; chat "
             f"policy head {args.chat_policy or 'e2e file'}, base {args.base_policy or 'e2e file'}.",
             "", *(f"- {render_row(r)}" for r in rows)]
    (out / "ab.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
