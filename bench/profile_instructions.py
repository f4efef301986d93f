"""Instructions per request under callgrind: a figure a busy machine barely moves.

Runs the app in-process as profile_inprocess.py does (real Redis and simulators, everything on,
the state view's scraping and the health loop off, since under callgrind's ~50x slowdown their
per-request share would be inflated), under `valgrind --tool=callgrind`; counters are zeroed
after a warm-up and dumped after N requests. Between identical runs the figure still moves by
about 1-2 % (event-loop wake-ups depend on when Redis and the simulator answer): run each tree
a few times and compare medians. A run takes a few minutes.

    .venv/bin/python bench/profile_instructions.py [--tree DIR] [--requests 400] [--runs 3]
        [--chat-policy prefix] [--stream]

`--tree` measures another checkout (e.g. a `git worktree` of a base revision) with this
harness; the figures print as millions of instructions per request, each run and the median.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def child(tree: Path, ctl: Path, requests: int, policy: str | None, stream: bool) -> None:
    """Inside valgrind: the harness, waiting for the controller between phases."""
    # The tree's own harness and stacks: its gateway may not read this tree's routing file.
    sys.path[:0] = [str(tree), str(tree / "tests"), str(tree / "bench")]
    import orjson
    import uvloop
    from gateway_bench import OPEN
    from profile_inprocess import _one
    from stack.processes import gateway_env
    from stacks import E2E_ROUTING, TestStack

    def wait_for(name: str) -> None:
        while not (ctl / name).exists():
            time.sleep(0.05)

    async def drive(app, key: str, body: bytes) -> None:
        async with app.router.lifespan_context(app):
            for _ in range(200):
                await _one(app, key, body)
            (ctl / "ready").touch()
            wait_for("go")
            for _ in range(requests):
                await _one(app, key, body)
            (ctl / "done").touch()
            wait_for("exit")

    tmp = Path(tempfile.mkdtemp(prefix="llmgw-instr-"))
    routing = E2E_ROUTING
    if policy:
        routing = tmp / "routing.yaml"
        routing.write_text(E2E_ROUTING.read_text().replace(
            "  chat:\n", f"  chat:\n    policy: {{name: {policy}}}\n", 1))
    stack = TestStack("sim", tmp, workers=1, sim_args=("--ttft-ms", "0", "--itl-ms", "0"),
                      env={"GLOBAL_MAX_CONCURRENT": "0"}, routing=routing).start()
    try:
        key = stack.create_org(**OPEN)["api_key"]
        os.environ.update({**stack.cfg.env, **gateway_env(stack.specs),
                           "REDIS_URL": f"redis://127.0.0.1:{stack.cfg.redis_port}/0",
                           "PROMETHEUS_MULTIPROC_DIR": str(tmp),
                           "BACKEND_METRICS_INTERVAL_SECS": "0",
                           "HEALTH_CHECK_INTERVAL_SECS": "3600", "REDIS_TIMEOUT_SECS": "30"})
        from llmgw.app import create_app
        body = orjson.dumps({"model": "qwen", "messages": [{"role": "user", "content": "hi"}],
                             "max_tokens": 16, "stream": stream})
        uvloop.run(drive(create_app(), key, body))
    finally:
        stack.stop()


def one_run(tree: Path, requests: int, policy: str | None, stream: bool) -> float:
    """Millions of instructions per request, one callgrind run."""
    work = Path(tempfile.mkdtemp(prefix="llmgw-cg-"))
    argv = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={work}/cg.%p",
            sys.executable, __file__, "--child", str(work), "--tree", str(tree),
            "--requests", str(requests), *(["--chat-policy", policy] if policy else []),
            *(["--stream"] if stream else [])]
    env = {**os.environ, "PYTHONHASHSEED": "0",
           "PYTHONPATH": f"{tree}/gateway:{tree}/simulator"}
    with (work / "log").open("wb") as log:
        proc = subprocess.Popen(argv, env=env, stdout=log, stderr=log)
        _await(work / "ready", proc, work)
        subprocess.run(["callgrind_control", "-z", str(proc.pid)], capture_output=True, check=True)
        (work / "go").touch()
        _await(work / "done", proc, work)
        subprocess.run(["callgrind_control", "-d", str(proc.pid)], capture_output=True, check=True)
        (work / "exit").touch()
        proc.wait()
    dump = next(work.glob("cg.*.1"))
    totals = next(line for line in dump.read_text().splitlines()
                  if line.startswith(("summary:", "totals:")))
    return int(totals.split()[1]) / requests / 1e6


def _await(flag: Path, proc: subprocess.Popen, work: Path) -> None:
    while not flag.exists():
        if proc.poll() is not None:
            raise SystemExit(f"the harness died; see {work / 'log'}")
        time.sleep(0.5)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tree", type=Path, default=ROOT)
    parser.add_argument("--requests", type=int, default=400)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--chat-policy", choices=["least_load", "prefix", "session", "random"])
    parser.add_argument("--stream", action="store_true")
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.tree.resolve(), args.child, args.requests, args.chat_policy, args.stream)
        return
    figures = [one_run(args.tree.resolve(), args.requests, args.chat_policy, args.stream)
               for _ in range(args.runs)]
    print(f"{args.tree}: M instructions/request " + " ".join(f"{f:.3f}" for f in figures)
          + f"  median {statistics.median(figures):.3f}")


if __name__ == "__main__":
    main()
